package storage

import (
	"context"

	"github.com/valise-im/valise"
)

// Events is implemented by stores shared by several node processes (the
// PostgreSQL backend, for replicas): it tells every process what the others
// committed, so that a process can wake its inbox streams without polling.
// Backends used by one process only, like SQLite, do not implement it; the
// node then relies on its own in-process wake-ups.
//
// Events are hints, delivered after the commit that caused them: a reader
// that re-reads the database after an event sees that commit. They may be
// duplicated, and they may be lost while the store is disconnected, which
// is why the listener reports EventResync once it is listening again.
type Events interface {
	// ListenEvents calls f for each event committed by any process sharing
	// the store, this one included, until ctx ends; it then returns nil.
	// It reconnects after connection errors, with backoff. Each time it
	// starts listening, the first time included, it calls f with an
	// EventResync, since events committed while it was not listening are
	// lost: the caller then re-checks everything it waits for.
	//
	// f is called from one goroutine, one event at a time, and must not
	// block: while it runs, later events wait.
	ListenEvents(ctx context.Context, f func(Event)) error
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventInbox: the inbox of Event.Device of Event.User grew.
	EventInbox EventKind = iota + 1
	// EventRevoke: Event.Device of Event.User was revoked or, when Device
	// is "", every device of Event.User (the user was deactivated).
	EventRevoke
	// EventResync: events may have been lost (the listener just started
	// or reconnected); User and Device are empty.
	EventResync
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventInbox:
		return "inbox"
	case EventRevoke:
		return "revoke"
	case EventResync:
		return "resync"
	}
	return "unknown"
}

// Event is one change committed to a shared store.
type Event struct {
	Kind   EventKind
	User   string // localpart
	Device valise.DeviceID
	// Local marks an EventInbox written by CommitBatch of the very store
	// that listens: the process that committed it knows already.
	Local bool
}
