package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// Events travel over PostgreSQL's LISTEN/NOTIFY. The writes that cause
// them call pg_notify inside their own transaction: PostgreSQL delivers a
// notification only if that transaction commits, after it committed, and
// sends a payload repeated within one transaction once. A payload is
// "i <user> <device>" (the device's inbox grew), "i <user> <device>
// <origin>" (the same, by the CommitBatch of the Store whose origin that
// is), "r <user> <device>" (the device was revoked) or "r <user> -" (every
// device of the user was), at most about 105 bytes: localparts are at
// most 64 bytes, device ids 18 and origins 12, far below NOTIFY's
// 8000-byte limit.
const (
	// eventChannel is the channel every Store of a database notifies and
	// listens on.
	eventChannel = "valise_events"
	// notifyEach notifies every payload of the text array $1.
	notifyEach = `SELECT pg_notify('` + eventChannel + `', p) FROM unnest($1::text[]) AS p`
	// notifyOne notifies the payload $1.
	notifyOne = `SELECT pg_notify('` + eventChannel + `', $1)`
	// allDevices stands for the device in a user-wide revocation.
	allDevices = "-"
	// listenerName is the application_name of the listening connection, so
	// an operator can tell it apart in pg_stat_activity.
	listenerName = "valise-events"
)

// Listener backoff after a connection error: doubling, capped.
const (
	minListenBackoff = 100 * time.Millisecond
	maxListenBackoff = 5 * time.Second
	// listenerPing is how long the listener waits for a notification
	// before it checks that its connection still answers, and how long
	// it gives that check.
	listenerPing = 30 * time.Second
)

func inboxPayload(user string, device valise.DeviceID) string {
	return "i " + user + " " + string(device)
}

// sentPayload is inboxPayload for a CommitBatch of the Store of origin.
func sentPayload(user string, device valise.DeviceID, origin string) string {
	return inboxPayload(user, device) + " " + origin
}

// originLen is the length of an origin: 6 random bytes in hex.
const originLen = 12

func newOrigin() string {
	var b [originLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validOrigin(s string) bool {
	if len(s) != originLen {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func revokePayload(user string, device valise.DeviceID) string {
	if device == "" {
		return "r " + user + " " + allDevices
	}
	return "r " + user + " " + string(device)
}

// parseEvent parses a payload strictly: ok is false for anything that
// does not name a well-formed localpart and device id (and origin, if
// any). origin is the event's origin, or "".
func parseEvent(payload string) (e storage.Event, origin string, ok bool) {
	f := strings.Split(payload, " ")
	if len(f) == 4 && f[0] == "i" && validOrigin(f[3]) {
		origin, f = f[3], f[:3]
	}
	if len(f) != 3 || valise.ValidateLocalpart(f[1]) != nil {
		return storage.Event{}, "", false
	}
	switch f[0] {
	case "i":
		e.Kind = storage.EventInbox
	case "r":
		e.Kind = storage.EventRevoke
		if f[2] == allDevices {
			return storage.Event{Kind: e.Kind, User: f[1]}, "", true
		}
	default:
		return storage.Event{}, "", false
	}
	d, err := valise.ParseDeviceID(f[2])
	if err != nil {
		return storage.Event{}, "", false
	}
	e.User, e.Device = f[1], d
	return e, origin, true
}

// ListenEvents calls f for each event that a Store on the same database,
// this one included, commits, until ctx ends; it then returns nil. It
// listens on a connection of its own, outside the pool, and opens a new
// one after an error, waiting 100ms, doubling up to 5s, between attempts.
// Each time it starts listening, it calls f with an EventResync first.
// Payloads that do not parse are ignored.
func (s *Store) ListenEvents(ctx context.Context, f func(storage.Event)) error {
	backoff := minListenBackoff
	for {
		listening, err := s.listen(ctx, f)
		if ctx.Err() != nil {
			return nil
		}
		if listening {
			backoff = minListenBackoff
		}
		s.log.WarnContext(ctx, "event listener lost its connection; reconnecting",
			"error", err.Error(), "retry_in", backoff.String())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, maxListenBackoff)
	}
}

// listen runs one connection of the listener until it fails or ctx ends;
// listening reports whether its LISTEN took effect.
func (s *Store) listen(ctx context.Context, f func(storage.Event)) (listening bool, err error) {
	cfg := s.pool.Config().ConnConfig
	cfg.RuntimeParams["application_name"] = listenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+eventChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	f(storage.Event{Kind: storage.EventResync})
	for {
		// Wake up now and then to check that the connection is alive: a
		// connection cut without a reset (a failover, a partition) would
		// otherwise wait for notifications that never come.
		wctx, cancel := context.WithTimeout(ctx, listenerPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && wctx.Err() != nil && ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, listenerPing)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
			continue
		}
		if err != nil {
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		if n.Channel != eventChannel {
			continue
		}
		if e, origin, ok := parseEvent(n.Payload); ok {
			e.Local = origin == s.origin
			f(e)
		} else {
			s.log.WarnContext(ctx, "ignoring a malformed event", "payload", truncate(n.Payload, 100))
		}
	}
}

// truncate shortens s to at most n bytes for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
