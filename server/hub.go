package server

import (
	"sync"

	"github.com/valise-im/valise"
)

// hub pushes what a commit wrote to a device's inbox to the device's open
// inbox streams, wakes them when it only knows that something was written,
// and ends them when the device is revoked. It lives in memory; it never
// polls the database. Commits of other replicas reach it through
// storage.Events (see Node.runEvents) as wake-ups.
type hub struct {
	mu   sync.Mutex
	subs map[devKey]map[*subscription]struct{}
}

type devKey struct {
	user   string
	device valise.DeviceID
}

// subscription is one open stream's doorbell, with the envelopes pushed
// to it since it last looked.
type subscription struct {
	wake    chan struct{} // capacity 1: a pending wake-up is never lost
	revoked chan struct{} // closed when the device is revoked
	once    sync.Once

	mu     sync.Mutex
	pushed []valise.Envelope // in commit order, so in cursor order
	bytes  int               // ciphertext bytes in pushed
	stale  bool              // something was not pushed: read storage
}

// Bounds of what a subscription holds in memory between two looks of its
// stream; past either, the stream reads its inbox from storage instead.
const (
	maxPushedEnvelopes = 512
	maxPushedBytes     = 1 << 20
)

// push hands a committed envelope to the stream and wakes it.
func (s *subscription) push(e valise.Envelope) {
	s.mu.Lock()
	switch {
	case s.stale:
	case len(s.pushed) >= maxPushedEnvelopes || s.bytes+len(e.Ciphertext) > maxPushedBytes:
		s.stale, s.pushed, s.bytes = true, nil, 0
	default:
		s.pushed = append(s.pushed, e)
		s.bytes += len(e.Ciphertext)
	}
	s.mu.Unlock()
	s.ring()
}

// invalidate wakes the stream without handing it anything: what was
// written must be read from storage.
func (s *subscription) invalidate() {
	s.mu.Lock()
	s.stale, s.pushed, s.bytes = true, nil, 0
	s.mu.Unlock()
	s.ring()
}

func (s *subscription) ring() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the envelopes pushed since the last take that follow
// cursor after, if they continue the inbox from there without a gap;
// ok is false when the stream must read storage instead: pushes were
// dropped, or an envelope was written that was not pushed (another
// replica's commit, a federation delivery, a notice). Cursors of one
// device's inbox have no gaps, so continuity is checked as well.
func (s *subscription) take(after uint64) (envs []valise.Envelope, ok bool) {
	s.mu.Lock()
	pushed, stale := s.pushed, s.stale
	s.pushed, s.bytes, s.stale = nil, 0, false
	s.mu.Unlock()
	if stale {
		return nil, false
	}
	for _, e := range pushed {
		if e.Cursor <= after {
			continue // already read from storage
		}
		if e.Cursor != after+1 {
			return nil, false
		}
		envs = append(envs, e)
		after = e.Cursor
	}
	return envs, true
}

func newHub() *hub { return &hub{subs: make(map[devKey]map[*subscription]struct{})} }

func (h *hub) subscribe(user string, device valise.DeviceID) (*subscription, func()) {
	s, unsubscribe, _ := h.trySubscribe(user, device, 0)
	return s, unsubscribe
}

// trySubscribe subscribes unless the device already has max streams open
// (max 0: no bound); ok is false then.
func (h *hub) trySubscribe(user string, device valise.DeviceID, max int) (s *subscription, unsubscribe func(), ok bool) {
	s = &subscription{wake: make(chan struct{}, 1), revoked: make(chan struct{})}
	k := devKey{user, device}
	h.mu.Lock()
	m := h.subs[k]
	if max > 0 && len(m) >= max {
		h.mu.Unlock()
		return nil, func() {}, false
	}
	if m == nil {
		m = make(map[*subscription]struct{})
		h.subs[k] = m
	}
	m[s] = struct{}{}
	h.mu.Unlock()
	return s, func() {
		h.mu.Lock()
		delete(h.subs[k], s)
		if len(h.subs[k]) == 0 {
			delete(h.subs, k)
		}
		h.mu.Unlock()
	}, true
}

// notify wakes every stream of the device; they read storage.
func (h *hub) notify(user string, device valise.DeviceID) {
	h.mu.Lock()
	for s := range h.subs[devKey{user, device}] {
		s.invalidate()
	}
	h.mu.Unlock()
}

// push hands e, just committed to the inbox of e.Recipient's device, to
// every stream of that device.
func (h *hub) push(e valise.Envelope) {
	h.mu.Lock()
	for s := range h.subs[devKey{e.Recipient.Localpart, e.RecipientDevice}] {
		s.push(e)
	}
	h.mu.Unlock()
}

// notifyAll wakes every stream, after events may have been lost.
func (h *hub) notifyAll() {
	h.mu.Lock()
	for _, m := range h.subs {
		for s := range m {
			s.invalidate()
		}
	}
	h.mu.Unlock()
}

// devices returns the devices that have streams open.
func (h *hub) devices() []devKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	ks := make([]devKey, 0, len(h.subs))
	for k := range h.subs {
		ks = append(ks, k)
	}
	return ks
}

// revoke ends every stream of the device; user-wide when device is "".
func (h *hub) revoke(user string, device valise.DeviceID) {
	h.mu.Lock()
	for k, m := range h.subs {
		if k.user != user || (device != "" && k.device != device) {
			continue
		}
		for s := range m {
			s.once.Do(func() { close(s.revoked) })
		}
	}
	h.mu.Unlock()
}

// streams returns how many streams are open.
func (h *hub) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}
