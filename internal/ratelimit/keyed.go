// Package ratelimit holds keyed token buckets: one bucket per key (a
// device, an address, a peer), with memory bounded under floods of keys.
// The client, admin and federation services take their rate limits from
// it.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed holds one token bucket per key. Buckets idle long enough to
// be full again are dropped, so memory stays bounded by active keys.
type Keyed struct {
	r   Rate
	mu  sync.Mutex
	m   map[string]*bucket
	now func() time.Time
	// lastSweep is when idle buckets were last dropped.
	lastSweep time.Time
	// full is the one bucket shared by new keys while m is at MaxKeys.
	full *bucket
}

// Rate is a token bucket: Burst tokens, refilled at PerSecond. A Burst of
// 0 disables the limit.
type Rate struct {
	Burst     int
	PerSecond float64
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewKeyed returns a limiter of rate r per key, reading time from now.
func NewKeyed(r Rate, now func() time.Time) *Keyed {
	return &Keyed{r: r, m: make(map[string]*bucket), now: now}
}

// refill is how long an idle bucket takes to be full again.
func (k *Keyed) refill() time.Duration {
	if k.r.PerSecond <= 0 {
		return time.Hour
	}
	return time.Duration(float64(k.r.Burst) / k.r.PerSecond * float64(time.Second))
}

// MaxKeys bounds the buckets of one limiter. Past it, idle buckets are
// swept (at most once a second), and if the map is still full a new key
// gets a shared, exhausted bucket: under a flood of distinct keys, new keys
// wait rather than grow memory or slow every call with a sweep.
const MaxKeys = 100_000

func (k *Keyed) get(key string, now time.Time) *bucket {
	if now.Sub(k.lastSweep) > time.Minute || (len(k.m) >= MaxKeys && now.Sub(k.lastSweep) > time.Second) {
		idle := k.refill()
		for key, b := range k.m {
			if now.Sub(b.seen) > idle {
				delete(k.m, key)
			}
		}
		k.lastSweep = now
	}
	b := k.m[key]
	if b == nil {
		if len(k.m) >= MaxKeys {
			if k.full == nil {
				k.full = &bucket{lim: rate.NewLimiter(rate.Limit(k.r.PerSecond), 1)}
			}
			return k.full
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(k.r.PerSecond), k.r.Burst)}
		k.m[key] = b
	}
	b.seen = now
	return b
}

// Allow takes one token for key, or returns how long to wait for one.
func (k *Keyed) Allow(key string) (bool, time.Duration) {
	if k.r.Burst <= 0 {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	b := k.get(key, now)
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Minute
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Peek reports whether key has a token left, without taking it.
func (k *Keyed) Peek(key string) (bool, time.Duration) {
	if k.r.Burst <= 0 {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	b := k.get(key, now)
	if b.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	res := b.lim.ReserveN(now, 1)
	d := res.DelayFrom(now)
	res.CancelAt(now)
	return false, d
}
