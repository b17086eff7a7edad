package server

import (
	"context"
	"errors"

	"github.com/valise-im/valise/storage"
)

// runEvents, when the store is shared by several replicas (it implements
// storage.Events), listens to what every replica commits until ctx ends,
// and wakes or ends the streams of this process that it concerns. It
// returns at once for a store of one process.
//
// This process's own commits reach its streams straight from the writer
// (Node.committed) and from the federation (Node.Delivered), without the
// round trip; the store marks the events of its own CommitBatch Local,
// and they are skipped, so the streams keep delivering from memory.
func (n *Node) runEvents(ctx context.Context) {
	events, ok := n.store.(storage.Events)
	if !ok {
		return
	}
	resync := make(chan struct{}, 1)
	rechecked := make(chan struct{})
	go func() {
		defer close(rechecked)
		for {
			select {
			case <-resync:
				n.recheckDevices(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	err := events.ListenEvents(ctx, func(e storage.Event) {
		switch e.Kind {
		case storage.EventInbox:
			if !e.Local {
				n.hub.notify(e.User, e.Device)
			}
		case storage.EventRevoke:
			n.hub.revoke(e.User, e.Device)
		case storage.EventResync:
			// Inbox events may have been lost: every stream re-reads.
			// Revocations too: recheck the devices, off the listener.
			n.hub.notifyAll()
			select {
			case resync <- struct{}{}:
			default:
			}
		}
	})
	if err != nil && ctx.Err() == nil {
		n.log.ErrorContext(ctx, "replica event listener stopped", "error", err.Error())
	}
	<-rechecked
}

// recheckDevices ends the streams of the devices that no longer exist,
// after revocations may have gone unheard.
func (n *Node) recheckDevices(ctx context.Context) {
	for _, k := range n.hub.devices() {
		_, err := n.store.GetDevice(ctx, k.user, k.device)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, storage.ErrNotFound):
			n.hub.revoke(k.user, k.device)
		case err != nil:
			// The next resync or the device's revocation event tries again.
			n.log.WarnContext(ctx, "cannot recheck a streaming device", "error", err.Error())
			return
		}
	}
}
