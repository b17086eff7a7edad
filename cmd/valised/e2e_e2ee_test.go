package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/client"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// sdkLogin logs a user in with the client SDK into a fresh state directory.
func (n *testNode) sdkLogin(t *testing.T, user, password string, otkTarget int) *client.Client {
	t.Helper()
	cfg := client.Config{Server: n.ready.Client, RootCAs: n.roots, ServerName: n.cfg.Node.Name, StateDir: filepath.Join(t.TempDir(), "state"), OneTimeKeyTarget: otkTarget}
	c, err := client.Login(t.Context(), cfg, user, password, "test "+user)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drain receives a device's backlog and returns the messages.
func drain(t *testing.T, c *client.Client) []client.Message {
	t.Helper()
	var got []client.Message
	var warnings []string
	err := c.Receive(t.Context(), client.ReceiveOptions{Idle: 500 * time.Millisecond, OnWarning: func(w client.Warning) { warnings = append(warnings, w.String()) }},
		func(m client.Message) error { got = append(got, m); return nil })
	if err != nil {
		t.Fatalf("receive on %s/%s: %v", c.User(), c.DeviceID(), err)
	}
	if len(warnings) > 0 {
		t.Fatalf("receive on %s/%s warned: %v", c.User(), c.DeviceID(), warnings)
	}
	return got
}

func bodies(ms []client.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.From+": "+string(m.Body))
	}
	return out
}

func wantBodies(t *testing.T, who string, got []client.Message, want ...string) {
	t.Helper()
	if g := bodies(got); !slices.Equal(g, want) {
		t.Fatalf("%s received %q, want %q", who, g, want)
	}
}

// TestEndToEndEncryptedConversation runs the scenario on a real
// node: Alice with two devices and Bob with one; every device reads every
// message; one-time prekeys run out and are replenished; a revoked device
// stops receiving.
func TestEndToEndEncryptedConversation(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		n.createUser(t, "alice", "alice-password")
		n.createUser(t, "bob", "bob-password")
		n.createUser(t, "carol", "carol-password")
		alice1 := n.sdkLogin(t, "alice@localhost", "alice-password", 4)
		alice2 := n.sdkLogin(t, "alice@localhost", "alice-password", 4)
		bob := n.sdkLogin(t, "bob@localhost", "bob-password", 4)

		res, err := alice1.Send(t.Context(), "bob@localhost", []byte("hello bob"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Devices) != 2 {
			t.Fatalf("alice1 sealed for %v, want bob's device and alice2", res.Devices)
		}
		wantBodies(t, "bob", drain(t, bob), "alice@localhost: hello bob")
		copyMsgs := drain(t, alice2)
		wantBodies(t, "alice2", copyMsgs, "alice@localhost: hello bob")
		if copyMsgs[0].To != "bob@localhost" {
			t.Errorf("alice2's copy is filed under %q, want bob@localhost", copyMsgs[0].To)
		}
		if _, err := bob.Send(t.Context(), "alice", []byte("hi alice"), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		wantBodies(t, "alice1", drain(t, alice1), "bob@localhost: hi alice")
		wantBodies(t, "alice2", drain(t, alice2), "bob@localhost: hi alice")
		if h, err := bob.History("alice@localhost"); err != nil || len(h) != 2 {
			t.Fatalf("bob's history with alice = %d messages, %v; want 2", len(h), err)
		}

		// Bob's stock is 4 one-time prekeys; alice has used one. Three more
		// sends empty it, a fifth is sealed to the signed prekey, and all
		// are readable.
		for i := range 4 {
			if _, err := alice1.Send(t.Context(), "bob", fmt.Appendf(nil, "burst %d", i), client.SendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		wantBodies(t, "bob", drain(t, bob), "alice@localhost: burst 0", "alice@localhost: burst 1", "alice@localhost: burst 2", "alice@localhost: burst 3")
		carol := n.login(t, "carol", "carol-password")
		claim := func() *clientv1.ClaimOneTimeKeyResponse {
			r, err := carol.c.ClaimOneTimeKey(carol.ctx(t.Context()), &clientv1.ClaimOneTimeKeyRequest{User: "bob", DeviceId: bob.DeviceID()})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := claim(); !r.Fallback {
			t.Fatalf("bob's one-time prekeys did not run out: claimed key %d", r.Key.KeyId)
		}
		if err := bob.Maintain(t.Context()); err != nil {
			t.Fatal(err)
		}
		if r := claim(); r.Fallback {
			t.Fatal("Maintain did not replenish bob's one-time prekeys")
		}
		drain(t, alice2) // alice2's copies of the burst

		// A revoked device stops receiving; senders stop sealing for it.
		if _, err := n.admin.RevokeDevice(t.Context(), &adminv1.RevokeDeviceRequest{User: "alice", DeviceId: alice2.DeviceID()}); err != nil {
			t.Fatal(err)
		}
		res, err = bob.Send(t.Context(), "alice", []byte("after revocation"), client.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Devices) != 1 || !strings.Contains(res.Devices[0], alice1.DeviceID()) {
			t.Fatalf("after revoking alice2, bob sealed for %v", res.Devices)
		}
		wantBodies(t, "alice1", drain(t, alice1), "bob@localhost: after revocation")
		if err := alice2.Receive(t.Context(), client.ReceiveOptions{Idle: 300 * time.Millisecond}, func(client.Message) error {
			t.Error("a revoked device received a message")
			return nil
		}); err == nil {
			t.Fatal("a revoked device could still stream its inbox")
		}
	})
}

// TestNodeStoresOnlyCiphertext sends messages carrying a random canary
// through a real node and finds the canary nowhere in the database files,
// the WAL or the logs; the same scan does find the send's idempotency key,
// so it looks where the data is.
func TestNodeStoresOnlyCiphertext(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		n.createUser(t, "alice", "alice-password")
		n.createUser(t, "bob", "bob-password")
		alice := n.sdkLogin(t, "alice@localhost", "alice-password", 10)
		bob := n.sdkLogin(t, "bob@localhost", "bob-password", 10)
		raw := make([]byte, 16)
		rand.Read(raw)
		canary := "CANARY-" + hex.EncodeToString(raw)
		var keys []string
		for i := range 3 {
			res, err := alice.Send(t.Context(), "bob", fmt.Appendf(nil, "%s message %d", canary, i), client.SendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, res.IdempotencyKey)
		}
		// Bob reads one message and leaves two in his inbox on the node.
		got := 0
		if err := bob.Receive(t.Context(), client.ReceiveOptions{Idle: 500 * time.Millisecond}, func(m client.Message) error {
			if !strings.Contains(string(m.Body), canary) {
				t.Errorf("bob read %q", m.Body)
			}
			got++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got != 3 {
			t.Fatalf("bob read %d messages, want 3", got)
		}
		if _, err := alice.Send(t.Context(), "bob", []byte(canary+" unread"), client.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		files := n.storageFiles(t)
		if hits := filesContaining(t, files, []byte(keys[0])); len(hits) == 0 {
			t.Fatalf("the scan of %d storage files did not find the idempotency key: it does not look where the data is", len(files))
		}
		if hits := filesContaining(t, files, []byte(canary)); len(hits) > 0 {
			t.Fatalf("the plaintext canary is stored in %v", hits)
		}
		if strings.Contains(n.logs.String(), canary) {
			t.Fatal("the plaintext canary is in the node's logs")
		}
		// The node's own directory (config, keys, sockets) holds no canary.
		entries, _ := os.ReadDir(n.dir)
		var paths []string
		for _, e := range entries {
			if e.Type().IsRegular() {
				paths = append(paths, filepath.Join(n.dir, e.Name()))
			}
		}
		if hits := filesContaining(t, paths, []byte(canary)); len(hits) > 0 {
			t.Fatalf("the plaintext canary is in %v", hits)
		}
	})
}
