package server

import (
	"sync"

	"github.com/valise-im/valise"
)

// hub wakes the open inbox streams of a device after a commit wrote to its
// inbox, and ends them when the device is revoked. It lives in memory; it
// never polls the database. Commits of other replicas reach it through
// storage.Events (see Node.runEvents).
type hub struct {
	mu   sync.Mutex
	subs map[devKey]map[*subscription]struct{}
}

type devKey struct {
	user   string
	device valise.DeviceID
}

// subscription is one open stream's doorbell.
type subscription struct {
	wake    chan struct{} // capacity 1: a pending wake-up is never lost
	revoked chan struct{} // closed when the device is revoked
	once    sync.Once
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

// notify wakes every stream of the device.
func (h *hub) notify(user string, device valise.DeviceID) {
	h.mu.Lock()
	for s := range h.subs[devKey{user, device}] {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

// notifyAll wakes every stream, after events may have been lost.
func (h *hub) notifyAll() {
	h.mu.Lock()
	for _, m := range h.subs {
		for s := range m {
			select {
			case s.wake <- struct{}{}:
			default:
			}
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
