package client

import (
	"context"
	"sync"
	"time"

	"github.com/valise-im/valise"
)

// MaxDirectoryTTL bounds Config.DirectoryTTL: a changed identity key or a
// new device shows up in Send at most this late.
const MaxDirectoryTTL = 5 * time.Minute

// maxClaimPause bounds how long a rate-limited claim is not asked again,
// whatever retry delay the node answered.
const maxClaimPause = 10 * time.Minute

// sendCache is what Send remembers between calls when Config.DirectoryTTL
// is set: the key directory of the users it sends to, and the devices
// whose one-time prekey claims the node refused as rate limited.
type sendCache struct {
	mu      sync.Mutex
	dirs    map[valise.UserID]cachedDir
	limited map[string]time.Time // "user/device" → when to claim again
}

type cachedDir struct {
	devs    []dirDevice
	fetched time.Time
}

// sendDirectory is directory for Send: with Config.DirectoryTTL set, an
// answer younger than the TTL is reused (cached is then true).
func (c *Client) sendDirectory(ctx context.Context, user valise.UserID) (devs []dirDevice, cached bool, err error) {
	ttl := c.cfg.DirectoryTTL
	if ttl <= 0 {
		devs, err = c.directory(ctx, user)
		return devs, false, err
	}
	now := c.cfg.Now()
	c.cache.mu.Lock()
	e, ok := c.cache.dirs[user]
	c.cache.mu.Unlock()
	if ok && now.Sub(e.fetched) < ttl && !now.Before(e.fetched) {
		return e.devs, true, nil
	}
	devs, err = c.directory(ctx, user)
	if err != nil {
		return nil, false, err
	}
	c.cache.mu.Lock()
	if c.cache.dirs == nil {
		c.cache.dirs = map[valise.UserID]cachedDir{}
	}
	c.cache.dirs[user] = cachedDir{devs: devs, fetched: now}
	c.cache.mu.Unlock()
	return devs, false, nil
}

// forgetDirectories drops the cached directories of users: after a send
// to them failed (a device may be gone), after their pins changed from a
// fresh directory (Verify), and when a cached answer conflicts with their
// pins.
func (c *Client) forgetDirectories(users ...valise.UserID) {
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	for _, u := range users {
		delete(c.cache.dirs, u)
	}
}

// claimPaused reports whether claims for the device are known to be rate
// limited now (only with Config.DirectoryTTL set).
func (c *Client) claimPaused(t target) bool {
	if c.cfg.DirectoryTTL <= 0 {
		return false
	}
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	until, ok := c.cache.limited[t.user.String()+"/"+t.dev.ID]
	return ok && c.cfg.Now().Before(until)
}

// pauseClaims remembers, with Config.DirectoryTTL set, that the node
// refused a claim for the device as rate limited, until the retry delay
// it answered (none: the TTL; at most maxClaimPause) passes.
func (c *Client) pauseClaims(t target, err error) {
	if c.cfg.DirectoryTTL <= 0 {
		return
	}
	d := c.cfg.DirectoryTTL
	if ri, ok := retryInfo(err); ok {
		d = ri
	}
	d = min(max(d, 0), maxClaimPause)
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	if c.cache.limited == nil {
		c.cache.limited = map[string]time.Time{}
	}
	c.cache.limited[t.user.String()+"/"+t.dev.ID] = c.cfg.Now().Add(d)
}
