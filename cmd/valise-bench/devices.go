package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/valise-im/valise/client"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// dev is one logged-in device of a user of its own.
type dev struct {
	c    *client.Client
	user string // localpart@node
	node *node
}

// runID returns a short random prefix for the users of one run, so that
// runs against the same --target nodes do not collide.
func runID() string {
	var b [3]byte
	rand.Read(b[:])
	return "vb" + hex.EncodeToString(b[:])
}

// makeDevices creates count users named <run><role><i> on nodes (round
// robin) through each node's admin socket, and logs one device of each in
// with the client SDK, each with its own state directory and TLS
// connection.
func (b *bench) makeDevices(ctx context.Context, nodes []*node, role string, count int) ([]*dev, error) {
	devs := make([]*dev, count)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.loginConcurrency)
	var made atomic.Int64
	stopProgress := b.progressf(func() string {
		return fmt.Sprintf("creating %s devices: %d/%d", role, made.Load(), count)
	})
	defer stopProgress()
	for i := range count {
		n := nodes[i%len(nodes)]
		g.Go(func() error {
			local := fmt.Sprintf("%s%s%d", b.run, role, i)
			password := local + "-bench-password"
			if _, err := n.admin.CreateUser(gctx, &adminv1.CreateUserRequest{User: local, Password: password}); err != nil {
				return fmt.Errorf("%s: create user %s: %w", n.name, local, err)
			}
			user := local + "@" + n.name
			cfg := client.Config{
				Server:           n.client,
				ServerName:       n.name,
				RootCAsPEM:       n.caPEM,
				StateDir:         filepath.Join(b.work, "devices", user),
				OneTimeKeyTarget: b.oneTimeKeys,
				DirectoryTTL:     b.directoryTTL,
			}
			c, err := client.Login(gctx, cfg, user, password, "valise-bench")
			if err != nil {
				return fmt.Errorf("log in %s: %w", user, err)
			}
			devs[i] = &dev{c: c, user: user, node: n}
			made.Add(1)
			return nil
		})
	}
	err := g.Wait()
	b.devices = append(b.devices, devs...)
	return devs, err
}

// receivers runs Receive (following the inbox) on devs until stop is
// called, counting every envelope opened into tr.
type receivers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// receive starts following the inboxes of devs; device i counts as
// receiver i.
func (b *bench) receive(ctx context.Context, devs []*dev, tr *tracker) *receivers {
	ctx, cancel := context.WithCancel(ctx)
	r := &receivers{cancel: cancel}
	for i, d := range devs {
		if d == nil {
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			opts := client.ReceiveOptions{Follow: true, OnWarning: func(w client.Warning) {
				if w.Kind == client.WarnReplay {
					// The SDK dropped a replayed message: a duplicate the
					// user never sees, but the node delivered it twice.
					b.warnf("%s: replay dropped (envelope %s)", d.user, w.Envelope)
					tr.mu.Lock()
					tr.duplicated++
					tr.mu.Unlock()
					return
				}
				b.warnf("%s: warning %v from %s/%s: %v", d.user, w.Kind, w.User, w.Device, w.Err)
				tr.error()
			}}
			err := d.c.Receive(ctx, opts, func(m client.Message) error {
				tr.deliver(i, m.Body, time.Now())
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				b.warnf("%s: receive: %v", d.user, err)
				tr.error()
			}
		}()
	}
	return r
}

// stop ends the Receives and waits for them (each acknowledges what it
// handled on the way out).
func (r *receivers) stop() {
	r.cancel()
	r.wg.Wait()
}
