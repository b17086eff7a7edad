package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// publishKeys publishes an identity key, a signed prekey and n one-time
// prekeys with ids from first. The bytes are opaque to the node.
func publishKeys(t *testing.T, d *device, first uint32, n int) uint32 {
	t.Helper()
	req := &clientv1.PublishDeviceKeysRequest{
		IdentityKey:  []byte("identity-" + d.id),
		SignedPrekey: &clientv1.PreKey{KeyId: 1, PublicKey: []byte("spk-" + d.id), Signature: []byte("sig")},
	}
	for i := range n {
		id := first + uint32(i)
		req.OneTimePrekeys = append(req.OneTimePrekeys, &clientv1.PreKey{KeyId: id, PublicKey: fmt.Appendf(nil, "otk-%d", id), Signature: []byte("sig")})
	}
	res, err := d.c.PublishDeviceKeys(d.ctx(t.Context()), req)
	if err != nil {
		t.Fatalf("publish keys: %v", err)
	}
	return res.OneTimeKeyCount
}

func send(t *testing.T, from *device, key string, to []*device, body []byte) []string {
	t.Helper()
	req := &clientv1.SendEnvelopesRequest{IdempotencyKey: key}
	for _, d := range to {
		req.Envelopes = append(req.Envelopes, &clientv1.OutgoingEnvelope{RecipientUser: d.user, RecipientDeviceId: d.id, Ciphertext: body})
	}
	res, err := from.c.SendEnvelopes(from.ctx(t.Context()), req)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return res.EnvelopeIds
}

// inboxStream opens StreamInbox and delivers envelopes on a channel.
func inboxStream(t *testing.T, d *device, after uint64) <-chan *clientv1.StreamInboxResponse {
	t.Helper()
	stream, err := d.c.StreamInbox(d.ctx(t.Context()), &clientv1.StreamInboxRequest{AfterCursor: after})
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	ch := make(chan *clientv1.StreamInboxResponse, 1024)
	go func() {
		defer close(ch)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- m
		}
	}()
	return ch
}

func recvN(t *testing.T, ch <-chan *clientv1.StreamInboxResponse, n int) []*clientv1.StreamInboxResponse {
	t.Helper()
	var got []*clientv1.StreamInboxResponse
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended after %d of %d envelopes", len(got), n)
			}
			got = append(got, m)
		case <-timeout:
			t.Fatalf("received %d of %d envelopes", len(got), n)
		}
	}
	return got
}

// expectNothing checks that no envelope arrives for a short while.
func expectNothing(t *testing.T, ch <-chan *clientv1.StreamInboxResponse) {
	t.Helper()
	select {
	case m, ok := <-ch:
		if ok {
			t.Fatalf("unexpected envelope at cursor %d", m.Cursor)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

// TestMessageFlow drives every ClientService RPC of the store-and-forward
// path over real TLS: login, keys, claims, send, live stream, ack,
// reconnect, logout.
func TestMessageFlow(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		n.createUser(t, "alice", "alice-password")
		n.createUser(t, "bob@localhost", "bob-password")
		alice := n.login(t, "alice@localhost", "alice-password")
		bob := n.login(t, "bob", "bob-password")
		bob2 := n.login(t, "bob", "bob-password")

		if got := publishKeys(t, bob, 100, 3); got != 3 {
			t.Fatalf("one-time keys after publish = %d, want 3", got)
		}
		publishKeys(t, bob2, 200, 0)
		cnt, err := bob.c.CountOneTimeKeys(bob.ctx(t.Context()), &clientv1.CountOneTimeKeysRequest{})
		if err != nil || cnt.OneTimeKeyCount != 3 {
			t.Fatalf("count = %v, %v; want 3", cnt, err)
		}
		keys, err := alice.c.GetDeviceKeys(alice.ctx(t.Context()), &clientv1.GetDeviceKeysRequest{User: "bob@localhost"})
		if err != nil {
			t.Fatal(err)
		}
		if len(keys.Devices) != 2 || keys.User != "bob@localhost" {
			t.Fatalf("bob's device keys = %v, want 2 devices", keys)
		}
		// Claims hand out each one-time key once, lowest id first, then the
		// signed prekey as a fallback.
		for i, want := range []uint32{100, 101, 102, 1} {
			res, err := alice.c.ClaimOneTimeKey(alice.ctx(t.Context()), &clientv1.ClaimOneTimeKeyRequest{User: "bob", DeviceId: bob.id})
			if err != nil {
				t.Fatal(err)
			}
			if res.Key.KeyId != want || res.Fallback != (i == 3) {
				t.Fatalf("claim %d = key %d fallback %v, want key %d fallback %v", i, res.Key.KeyId, res.Fallback, want, i == 3)
			}
		}

		// A stream opened before the send receives it live.
		live := inboxStream(t, bob, 0)
		body := bytes.Repeat([]byte{0, 1, 2, 255}, 256)
		ids := send(t, alice, "k1", []*device{bob, bob2}, body)
		if len(ids) != 2 || ids[0] == ids[1] {
			t.Fatalf("ids = %v", ids)
		}
		got := recvN(t, live, 1)[0]
		if got.EnvelopeId != ids[0] || got.SenderUser != "alice@localhost" || got.SenderDeviceId != alice.id || got.Cursor != 1 || !bytes.Equal(got.Ciphertext, body) {
			t.Fatalf("received %+v", got)
		}
		if d := time.Since(got.ServerTime.AsTime()); d < 0 || d > time.Minute {
			t.Errorf("server time %v is off", got.ServerTime.AsTime())
		}

		// The same idempotency key returns the first answer and stores nothing.
		again := send(t, alice, "k1", []*device{bob, bob2}, []byte("other"))
		if fmt.Sprint(again) != fmt.Sprint(ids) {
			t.Fatalf("replay ids = %v, want %v", again, ids)
		}
		expectNothing(t, live)

		// More sends arrive in order; ack; reconnect from the ack loses nothing.
		for i := range 5 {
			send(t, alice, fmt.Sprintf("m%d", i), []*device{bob}, fmt.Appendf(nil, "msg %d", i))
		}
		msgs := recvN(t, live, 5)
		for i, m := range msgs {
			if m.Cursor != uint64(i+2) || string(m.Ciphertext) != fmt.Sprintf("msg %d", i) {
				t.Fatalf("envelope %d: cursor %d body %q", i, m.Cursor, m.Ciphertext)
			}
		}
		if _, err := bob.c.AckInbox(bob.ctx(t.Context()), &clientv1.AckInboxRequest{Cursor: 3}); err != nil {
			t.Fatal(err)
		}
		re := inboxStream(t, bob, 0)
		rest := recvN(t, re, 3)
		if rest[0].Cursor != 4 || rest[2].Cursor != 6 {
			t.Fatalf("after ack 3, stream starts at %d and ends at %d; want 4..6", rest[0].Cursor, rest[2].Cursor)
		}
		expectNothing(t, re)

		// Neither ciphertext nor tokens reach the logs.
		canary := "CANARY-" + ids[0]
		send(t, alice, "canary", []*device{bob}, []byte(canary))
		recvN(t, live, 1)
		for _, secret := range []string{canary, alice.token, bob.token, "alice-password"} {
			if strings.Contains(n.logs.String(), secret) {
				t.Fatalf("the node's logs contain a ciphertext or secret")
			}
		}

		// bob2 got the first envelope only.
		got2 := recvN(t, inboxStream(t, bob2, 0), 1)[0]
		if got2.EnvelopeId != ids[1] {
			t.Fatalf("bob2 got %s, want %s", got2.EnvelopeId, ids[1])
		}

		devs, err := bob.c.ListDevices(bob.ctx(t.Context()), &clientv1.ListDevicesRequest{PageSize: 1})
		if err != nil || len(devs.Devices) != 1 || devs.NextPageToken == "" {
			t.Fatalf("list devices page 1 = %v, %v", devs, err)
		}
		devs2, err := bob.c.ListDevices(bob.ctx(t.Context()), &clientv1.ListDevicesRequest{PageSize: 1, PageToken: devs.NextPageToken})
		if err != nil || len(devs2.Devices) != 1 || devs2.Devices[0].DeviceId == devs.Devices[0].DeviceId {
			t.Fatalf("list devices page 2 = %v, %v", devs2, err)
		}

		// Deleting bob2 ends its token; logout ends bob's and his stream.
		if _, err := bob.c.DeleteDevice(bob.ctx(t.Context()), &clientv1.DeleteDeviceRequest{DeviceId: bob2.id}); err != nil {
			t.Fatal(err)
		}
		_, err = bob2.c.CountOneTimeKeys(bob2.ctx(t.Context()), &clientv1.CountOneTimeKeysRequest{})
		wantCode(t, err, codes.Unauthenticated)
		stream, err := bob.c.StreamInbox(bob.ctx(t.Context()), &clientv1.StreamInboxRequest{AfterCursor: 7})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.c.Logout(bob.ctx(t.Context()), &clientv1.LogoutRequest{}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		if err == io.EOF || err == nil {
			t.Fatalf("stream after logout: %v, want an error", err)
		}
		wantCode(t, err, codes.Unauthenticated)
		_, err = bob.c.ListDevices(bob.ctx(t.Context()), &clientv1.ListDevicesRequest{})
		wantCode(t, err, codes.Unauthenticated)
		if !errors.Is(nil, nil) {
			t.Fatal("unreachable")
		}
	})
}
