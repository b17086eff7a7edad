package client

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fastKDF keeps passphrase tests quick.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// testConfig returns a Config for node with a fresh state directory.
func testConfig(t *testing.T, n *fakeNode) Config {
	t.Helper()
	return Config{
		Server:     n.addr,
		ServerName: "localhost",
		RootCAsPEM: n.caPEM,
		StateDir:   filepath.Join(t.TempDir(), "state"),
		KDF:        fastKDF,
	}
}

// login logs localpart in on n (creating the user) with a fresh state
// directory, and closes the client at the end of the test.
func login(t *testing.T, n *fakeNode, localpart string, tweak func(*Config)) *Client {
	t.Helper()
	n.addUser(localpart, "pw-"+localpart)
	cfg := testConfig(t, n)
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := Login(t.Context(), cfg, localpart+"@"+fakeNodeName, "pw-"+localpart, "test "+localpart)
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receiveAll drains c's inbox and returns the messages and warnings.
func receiveAll(t *testing.T, c *Client) ([]Message, []Warning) {
	t.Helper()
	var msgs []Message
	var warns []Warning
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := c.Receive(ctx, ReceiveOptions{Idle: 300 * time.Millisecond, OnWarning: func(w Warning) { warns = append(warns, w) }},
		func(m Message) error { msgs = append(msgs, m); return nil })
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return msgs, warns
}

// loadState reads c's state and secrets.
func loadState(t *testing.T, c *Client) (*state, *secrets) {
	t.Helper()
	c.store.mu.Lock()
	defer c.store.mu.Unlock()
	l, err := c.store.load()
	if err != nil {
		t.Fatal(err)
	}
	return l.st, l.sec
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
