package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// ReceiveOptions tune Receive.
type ReceiveOptions struct {
	// Follow keeps streaming new envelopes until ctx ends, reconnecting
	// after transient errors. Without it Receive returns once the backlog
	// is drained.
	Follow bool
	// Idle is how long Receive without Follow waits for another envelope
	// before deciding the backlog is drained (default 1s). The inbox
	// stream has no end-of-backlog marker; the node pushes the backlog at
	// once, so a pause of this length means it is done.
	Idle time.Duration
	// OnWarning, when set, is called with each dropped envelope and each
	// trust warning.
	OnWarning func(Warning)
}

// ErrReceiving is returned by Receive when another Receive (in this or
// another process) is running on the same state directory.
var ErrReceiving = errors.New("client: another receive is running on this state directory")

// ackEvery bounds how many handled envelopes wait for one cumulative
// acknowledgement while more keep arriving, and ackDelay how long the
// first of them waits. The acknowledgement only lets the node delete
// what is stored already: after a crash before it, the next Receive
// acknowledges up to the saved cursor first and streams from there.
const (
	ackEvery = 64
	ackDelay = 50 * time.Millisecond
)

// Receive streams the device's inbox from the saved cursor. Each envelope
// is opened and verified against the sender's pinned identity key
// (pinning it on first use); a message seen before is dropped; a new one
// is appended to the history (synced) together with the cursor, its
// one-time prekey is deleted, handle is called, and the inbox is
// acknowledged up to it. Envelopes that do not open are reported through
// opts.OnWarning and acknowledged, so that no envelope blocks the inbox.
//
// Without opts.Follow, Receive returns nil once no envelope arrived for
// opts.Idle. With it, Receive runs until ctx ends and returns ctx.Err().
//
// Envelopes that arrive together (up to 64) are handled as one batch:
// opened against one snapshot of the state, then stored in one update
// (one sync of the history, the seen ids and the state for all of them)
// before handle sees any of them. Receive never passes a stored message
// to handle again, so handle may miss messages that are in the history:
//
//   - An error from handle stops Receive and is returned. The message
//     stays in the history, and so do the rest of its batch (up to 63
//     messages), which handle is not called with.
//   - A crash (or kill) after a batch is stored and before handle ran for
//     all of it leaves the same: the messages are in the history, and the
//     next Receive does not pass them to handle.
//
// An application that must process every message keeps, durably, the ID
// (and Envelope) of the last message its handler finished with, and
// before each Receive reads History("") and processes the received
// messages (Envelope not empty) stored after that one.
func (c *Client) Receive(ctx context.Context, opts ReceiveOptions, handle func(Message) error) error {
	if opts.Idle <= 0 {
		opts.Idle = DefaultIdle
	}
	if opts.OnWarning == nil {
		opts.OnWarning = func(Warning) {}
	}
	f, err := os.OpenFile(filepath.Join(c.cfg.StateDir, recvLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("client: receive lock: %w", err)
	}
	defer f.Close()
	if ok, err := tryFlock(f); err != nil {
		return fmt.Errorf("client: receive lock: %w", err)
	} else if !ok {
		return ErrReceiving
	}
	seen, err := loadSeen(c.cfg.StateDir, maxSeen, c.cfg.Now, c.seenHorizon)
	if err != nil {
		return err
	}
	if err := c.ack(ctx); err != nil {
		return err
	}
	r := &receiver{c: c, opts: opts, seen: seen, handle: handle}
	delay, failures := retryBase, 0
	for {
		progressed, err := r.stream(ctx)
		var herr handlerError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &herr):
			return herr.err
		case ctx.Err() != nil:
			return ctx.Err()
		case !transient(err):
			return err
		}
		if progressed {
			delay, failures = retryBase, 0
		}
		failures++
		if !opts.Follow && failures >= 3 {
			return err
		}
		c.log.InfoContext(ctx, "inbox stream broke; reconnecting", "code", status.Code(err).String(), "in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// receiver is one Receive call.
type receiver struct {
	c      *Client
	opts   ReceiveOptions
	seen   *seenSet
	handle func(Message) error
}

// errStreamEnded is a stream the node closed without an error; Receive
// reconnects.
var errStreamEnded = status.Error(codes.Unavailable, "the node ended the inbox stream")

// stream runs one StreamInbox call. It returns nil when the backlog is
// drained (without Follow), and reports whether any envelope was handled.
func (r *receiver) stream(ctx context.Context) (progressed bool, err error) {
	c := r.c
	var cursor uint64
	if err := c.store.view(func(st *state, _ *secrets) error { cursor = st.Cursor; return nil }); err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.StreamInbox(sctx, &clientv1.StreamInboxRequest{AfterCursor: cursor})
	if err != nil {
		return false, fmt.Errorf("client: stream inbox: %w", err)
	}
	envs := make(chan *clientv1.StreamInboxResponse, ackEvery)
	errc := make(chan error, 1)
	go func() {
		for {
			e, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errStreamEnded
				}
				errc <- err
				return
			}
			select {
			case envs <- e:
			case <-sctx.Done():
				return
			}
		}
	}()
	var idle <-chan time.Time
	var timer *time.Timer
	if !r.opts.Follow {
		timer = time.NewTimer(r.opts.Idle)
		defer timer.Stop()
		idle = timer.C
	}
	// Acknowledge what was handled on the way out, even when ctx ended.
	defer func() {
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer acancel()
		if aerr := c.ack(actx); aerr != nil && err == nil {
			err = aerr
		}
	}()
	unacked := 0
	// The first envelope handled after an acknowledgement starts ackDue:
	// envelopes arriving in a steady trickle share one acknowledgement
	// (and one state write) per ackDelay or ackEvery envelopes.
	var ackTimer *time.Timer
	var ackDue <-chan time.Time
	defer func() {
		if ackTimer != nil {
			ackTimer.Stop()
		}
	}()
	for {
		select {
		case e := <-envs:
			// Handle what has arrived together in one batch: one state
			// update (and one sync of each file) for all of it.
			var batch []*clientv1.StreamInboxResponse
			for {
				if e.GetCursor() > cursor {
					cursor = e.GetCursor()
					batch = append(batch, e)
				} // else the node repeated an envelope we have handled
				if len(batch) >= maxBatch || len(envs) == 0 {
					break
				}
				e = <-envs
			}
			if len(batch) == 0 {
				continue
			}
			if err := r.envelopes(ctx, batch); err != nil {
				return progressed, err
			}
			progressed = true
			unacked += len(batch)
			if unacked >= ackEvery {
				if err := c.ack(ctx); err != nil {
					return progressed, err
				}
				unacked = 0
			} else if ackTimer == nil {
				ackTimer = time.NewTimer(ackDelay)
				ackDue = ackTimer.C
			}
			if timer != nil {
				timer.Reset(r.opts.Idle)
			}
		case err := <-errc:
			if status.Code(err) == codes.Unauthenticated {
				return progressed, fmt.Errorf("client: the node refused this device (revoked?): %w", err)
			}
			return progressed, fmt.Errorf("client: stream inbox: %w", err)
		case <-ackDue:
			ackTimer, ackDue = nil, nil
			if unacked > 0 {
				if err := c.ack(ctx); err != nil {
					return progressed, err
				}
				unacked = 0
			}
		case <-idle:
			return progressed, nil
		case <-ctx.Done():
			return progressed, ctx.Err()
		}
	}
}

// ack acknowledges the inbox up to the handled cursor.
func (c *Client) ack(ctx context.Context) error {
	var cursor, acked uint64
	if err := c.store.view(func(st *state, _ *secrets) error { cursor, acked = st.Cursor, st.Acked; return nil }); err != nil {
		return err
	}
	if cursor <= acked {
		return nil
	}
	_, err := retry(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.AckInboxResponse, error) {
		return rpc.AckInbox(ctx, &clientv1.AckInboxRequest{Cursor: cursor})
	})
	if err != nil {
		return fmt.Errorf("client: acknowledge the inbox: %w", err)
	}
	return c.store.update(func(st *state, _ *secrets) error {
		st.Acked = max(st.Acked, cursor)
		return nil
	})
}

// maxBatch bounds the envelopes handled in one state update.
const maxBatch = ackEvery

// item is one envelope of a batch: what opening it gave, to store.
type item struct {
	e        *clientv1.StreamInboxResponse
	keys     *openKeys // nil for a delivery failure notice
	msg      *Message  // nil when nothing is to be stored
	warnings []Warning
	// otk is the one-time prekey that decrypted the envelope, to delete
	// whatever comes next (a bad signature, a changed key, a replay): it
	// must never open it again.
	otk    uint32
	hasOTK bool
}

// envelopes handles a batch of envelopes, in order: each is opened (or
// dropped) against one snapshot of the state, then everything is stored
// in one state update (history, seen ids, pins, used one-time prekeys,
// cursor), and only then are the warnings reported and handle called. An
// envelope that cannot be opened for a local reason (localError) ends
// the batch: those before it are stored, it stays in the inbox.
func (r *receiver) envelopes(ctx context.Context, batch []*clientv1.StreamInboxResponse) error {
	c := r.c
	snap, err := c.store.snapshot()
	if err != nil {
		return err
	}
	defer snap.sec.wipe()
	items := make([]*item, 0, len(batch))
	inBatch := map[string]bool{}
	looked := map[e2ee.Address][]byte{}
	var stop error
	for _, e := range batch {
		it, err := r.prepare(ctx, e, &snap, inBatch, looked)
		if err != nil {
			stop = err
			break
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return stop
	}
	err = c.store.update(func(st *state, sec *secrets) error {
		var lines []byte
		var ids []string
		for _, it := range items {
			if k := it.keys; it.msg != nil && k.pin != nil {
				// The device may have been pinned (or verified) by a Send
				// or a Verify since its key was looked up: never replace
				// that pin.
				if p := st.Pins[k.pin.User][k.pin.Device]; p != nil && !bytes.Equal(p.IdentityKey, k.pinKey) {
					it.msg = nil
					it.warnings = []Warning{{Kind: WarnChangedKey, User: k.pin.User, Device: k.pin.Device},
						{Kind: WarnRejected, User: it.e.GetSenderUser(), Device: it.e.GetSenderDeviceId(), Envelope: it.e.GetEnvelopeId(),
							Err: fmt.Errorf("%w: %s device %s was pinned to another key meanwhile", ErrIdentityChanged, k.pin.User, k.pin.Device)}}
				}
			}
			if it.msg != nil {
				line, err := historyLine(*it.msg)
				if err != nil {
					return err
				}
				lines = append(lines, line...)
				ids = append(ids, it.msg.ID)
				if k := it.keys; k.pin != nil && st.Pins[k.pin.User][k.pin.Device] == nil {
					pinKey(st, k.pin.User, k.pin.Device, k.pinKey, c.cfg.Now())
				}
			}
			if it.hasOTK {
				if k, ok := sec.OneTimeKeys[it.otk]; ok {
					clear(k)
					delete(sec.OneTimeKeys, it.otk)
				}
			}
			st.Cursor = max(st.Cursor, it.e.GetCursor())
		}
		if len(lines) > 0 {
			if err := c.appendHistoryLines(lines); err != nil {
				return err
			}
		}
		return r.seen.add(ids...)
	})
	if err != nil {
		return err
	}
	for _, it := range items {
		for _, w := range it.warnings {
			r.opts.OnWarning(w)
		}
		if it.msg == nil {
			continue
		}
		if err := r.handle(*it.msg); err != nil {
			return handlerError{err}
		}
	}
	return stop
}

// prepare opens e against snap, or decides to drop it. inBatch holds the
// message ids of the batch so far, looked the keys it looked up. A one-time prekey used is removed from
// snap at once, so that it opens nothing else in the batch. The error is
// that of a localError: e must stay in the inbox.
func (r *receiver) prepare(ctx context.Context, e *clientv1.StreamInboxResponse, snap *loaded, inBatch map[string]bool, looked map[e2ee.Address][]byte) (*item, error) {
	c := r.c
	it := &item{e: e}
	if f := e.GetDeliveryFailure(); f != nil {
		// The node's notice that an envelope this device sent was given
		// up: nothing to open; report it and move past it.
		it.warnings = []Warning{{Kind: WarnDeliveryFailed, User: f.GetRecipientUser(), Device: f.GetRecipientDeviceId(),
			Envelope: f.GetEnvelopeId(), Err: fmt.Errorf("reason: %s", sanitizeReason(f.GetReason()))}}
		return it, nil
	}
	keys := &openKeys{c: c, ctx: ctx, snap: snap, looked: looked}
	it.keys = keys
	reject := func(err error) {
		it.warnings = append(it.warnings, Warning{Kind: WarnRejected, User: e.GetSenderUser(), Device: e.GetSenderDeviceId(), Envelope: e.GetEnvelopeId(), Err: err})
	}
	m, err := r.open(ctx, e, keys)
	var lerr localError
	if errors.As(err, &lerr) {
		// Not the envelope's fault: keep it in the inbox for the next try.
		return nil, lerr.err
	}
	it.otk, it.hasOTK = keys.otk, keys.hasOTK && !errors.Is(err, e2ee.ErrDecrypt)
	if it.hasOTK {
		if k, ok := snap.sec.OneTimeKeys[it.otk]; ok {
			clear(k)
			delete(snap.sec.OneTimeKeys, it.otk)
		}
	}
	switch {
	case errors.Is(err, ErrIdentityChanged):
		it.warnings = append(it.warnings, Warning{Kind: WarnChangedKey, User: e.GetSenderUser(), Device: e.GetSenderDeviceId()})
		reject(err)
	case err != nil:
		reject(err)
	default:
		id := messageID(m.ID)
		to, text, perr := decodePayload(m.Body)
		switch {
		case r.seen.has(id) || inBatch[id]:
			it.warnings = append(it.warnings, Warning{Kind: WarnReplay, User: m.Sender.User, Device: m.Sender.Device, Envelope: e.GetEnvelopeId()})
		case !it.hasOTK && r.seen.forgottenBefore(m.Time):
			// Sealed to a signed prekey, which may still open a replay,
			// and as old as ids the seen bound dropped.
			it.warnings = append(it.warnings, Warning{Kind: WarnReplay, User: m.Sender.User, Device: m.Sender.Device, Envelope: e.GetEnvelopeId(), Err: errReplaySuspect})
		case perr != nil:
			reject(perr)
		case m.Sender.User != c.user.String() && to != c.user.String():
			reject(fmt.Errorf("addressed to %q, not to this user", to))
		default:
			inBatch[id] = true
			it.warnings = append(it.warnings, keys.warnings...)
			it.msg = &Message{
				ID: id, From: m.Sender.User, FromDevice: m.Sender.Device, To: to,
				Time: m.Time.UTC(), Body: text, Received: c.cfg.Now().UTC(), Envelope: e.GetEnvelopeId(),
			}
		}
	}
	return it, nil
}

// handlerError carries the error of the caller's handler out of Receive
// unchanged.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }
func (e handlerError) Unwrap() error { return e.err }

// open opens and verifies e. When the pinned key fails to verify and the
// node's directory shows another key for the device, the error wraps
// ErrIdentityChanged.
func (r *receiver) open(ctx context.Context, e *clientv1.StreamInboxResponse, keys *openKeys) (e2ee.Message, error) {
	c := r.c
	sender, err := valise.ParseUserID(e.GetSenderUser(), "")
	if err != nil {
		return e2ee.Message{}, fmt.Errorf("bad sender: %w", err)
	}
	from := e2ee.Address{User: sender.String(), Device: e.GetSenderDeviceId()}
	to := e2ee.Address{User: c.user.String(), Device: c.device}
	m, err := e2ee.Open(e.GetCiphertext(), to, from, keys)
	clear(keys.priv)
	if err == nil || keys.pinned == nil || !errors.Is(err, e2ee.ErrSignature) {
		return m, err
	}
	devs, derr := c.directory(ctx, sender)
	if derr != nil {
		return m, err
	}
	for _, d := range devs {
		if d.ID == from.Device && string(d.Identity) != string(keys.pinned) {
			return m, fmt.Errorf("%w: %s device %s: %w", ErrIdentityChanged, from.User, from.Device, err)
		}
	}
	return m, err
}

// openKeys is the receiver's key store as e2ee.Open sees it: the
// batch's snapshot of the state, and the node's directory for devices
// not pinned yet.
type openKeys struct {
	c    *Client
	ctx  context.Context
	snap *loaded
	// looked holds the identity keys of devices not pinned yet that the
	// batch looked up in the directory, so that each is asked once.
	looked map[e2ee.Address][]byte
	// pinned is the pinned key used, if any.
	pinned []byte
	// pin and pinKey are a device seen for the first time, to pin when
	// its envelope opens.
	pin    *e2ee.Address
	pinKey []byte
	// warnings are trust warnings to show when the envelope opens.
	warnings []Warning
	// priv is the copy of the prekey handed to e2ee.Open, cleared after.
	priv []byte
	// otk is the one-time prekey handed out, if hasOTK.
	otk    uint32
	hasOTK bool
}

// localError is a failure to open an envelope that is not the envelope's
// fault (the state directory, the node's key directory unreachable, the
// context ended): Receive stops or retries instead of dropping it.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

// PreKey implements e2ee.Keys: the one-time prekeys not used yet, and
// the signed prekeys, current or within their grace period.
func (k *openKeys) PreKey(kind e2ee.PreKeyKind, id uint32) ([]byte, error) {
	var priv []byte
	var lookupErr error
	err := k.view(func(_ *state, sec *secrets) error {
		lookupErr = lookupPreKey(k.c.cfg, sec, kind, id, &priv)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if lookupErr != nil {
		return nil, lookupErr
	}
	k.priv = priv
	if kind == e2ee.OneTime {
		k.otk, k.hasOTK = id, true
	}
	return priv, nil
}

// view runs fn on the batch's snapshot or, without one, on the state as
// stored now. A failure to read the state is a localError.
func (k *openKeys) view(fn func(st *state, sec *secrets) error) error {
	if k.snap != nil {
		return fn(k.snap.st, k.snap.sec)
	}
	if err := k.c.store.view(fn); err != nil {
		return localError{err}
	}
	return nil
}

// lookupPreKey copies the private prekey (kind, id) of sec into *priv.
func lookupPreKey(cfg Config, sec *secrets, kind e2ee.PreKeyKind, id uint32, priv *[]byte) error {
	switch kind {
	case e2ee.OneTime:
		if p, ok := sec.OneTimeKeys[id]; ok {
			*priv = append([]byte(nil), p...)
			return nil
		}
		return fmt.Errorf("%w: one-time prekey %d was used already (a replay?) or is unknown", e2ee.ErrUnknownPreKey, id)
	case e2ee.Signed:
		for _, s := range sec.SignedPreKeys {
			if s.ID != id {
				continue
			}
			if !s.Retired.IsZero() && cfg.Now().Sub(s.Retired) > cfg.SignedPreKeyGrace {
				return fmt.Errorf("%w: signed prekey %d is past its grace period", e2ee.ErrUnknownPreKey, id)
			}
			*priv = append([]byte(nil), s.Private...)
			return nil
		}
		return fmt.Errorf("%w: signed prekey %d is unknown or past its grace period", e2ee.ErrUnknownPreKey, id)
	}
	return fmt.Errorf("%w: prekey kind %d", e2ee.ErrUnknownPreKey, kind)
}

// IdentityKey implements e2ee.Keys: the pinned key of the sending device,
// else the key the node's directory shows (pinned once the envelope
// opens: trust on first use).
func (k *openKeys) IdentityKey(sender e2ee.Address) ([]byte, error) {
	var key []byte
	verified := false
	err := k.view(func(st *state, _ *secrets) error {
		if p := st.Pins[sender.User][sender.Device]; p != nil {
			key = append([]byte(nil), p.IdentityKey...)
		}
		verified = userVerified(st, sender.User)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sender.User == k.c.user.String() && sender.Device == k.c.device {
		return k.c.identity.Public(), nil
	}
	if key != nil {
		k.pinned = key
		return key, nil
	}
	u, err := valise.ParseUserID(sender.User, "")
	if err != nil {
		return nil, err
	}
	if id := k.looked[sender]; id != nil {
		// Looked up for an earlier envelope of the batch, pinned with it.
		k.pin, k.pinKey = &sender, id
		if verified {
			k.warnings = append(k.warnings, Warning{Kind: WarnNewDevice, User: sender.User, Device: sender.Device})
		}
		return id, nil
	}
	devs, err := k.c.directory(k.ctx, u)
	if err != nil {
		if k.ctx.Err() != nil || transient(err) || status.Code(err) == codes.Canceled {
			// The node's directory could not be read: try again later
			// rather than drop a message that may be fine.
			return nil, localError{err}
		}
		return nil, err
	}
	for _, d := range devs {
		if d.ID == sender.Device {
			k.pin, k.pinKey = &sender, d.Identity
			if k.looked != nil {
				k.looked[sender] = d.Identity
			}
			if verified {
				k.warnings = append(k.warnings, Warning{Kind: WarnNewDevice, User: sender.User, Device: sender.Device})
			}
			return d.Identity, nil
		}
	}
	return nil, fmt.Errorf("%s device %s has no published identity key", sender.User, sender.Device)
}

// sanitizeReason keeps a node-given failure reason printable and short.
func sanitizeReason(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := []byte(s)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			b[i] = '?'
		}
	}
	return string(b)
}
