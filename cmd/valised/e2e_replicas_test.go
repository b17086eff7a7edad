package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// copyNodeDir copies the node directory src (config, certificates, keys,
// DSN file) to a fresh directory, as an operator sets up a replica: both
// then serve the same node from the same database.
func copyNodeDir(t *testing.T, src string) string {
	t.Helper()
	root, err := os.MkdirTemp("", "vn") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	dst := filepath.Join(root, "node")
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		}
		return nil // sockets and the like belong to a running node
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return dst
}

// onNode returns d as used through another replica: same token, another
// connection.
func onNode(t *testing.T, d *device, n *testNode) *device {
	return &device{user: d.user, id: d.id, token: d.token, c: n.client(t)}
}

// liveStream opens d's inbox stream; the error that ends it arrives on
// the second channel.
func liveStream(t *testing.T, d *device) (<-chan *clientv1.StreamInboxResponse, <-chan error) {
	t.Helper()
	stream, err := d.c.StreamInbox(d.ctx(t.Context()), &clientv1.StreamInboxRequest{})
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	ch, end := make(chan *clientv1.StreamInboxResponse, 64), make(chan error, 1)
	go func() {
		defer close(ch)
		for {
			m, err := stream.Recv()
			if err != nil {
				end <- err
				return
			}
			ch <- m
		}
	}()
	return ch, end
}

// wantStreamEnd waits for the stream to end with code.
func wantStreamEnd(t *testing.T, end <-chan error, code codes.Code) {
	t.Helper()
	select {
	case err := <-end:
		wantCode(t, err, code)
	case <-time.After(10 * time.Second):
		t.Fatalf("the stream did not end with %v", code)
	}
}

// crossSend checks that an envelope sent through one replica reaches a
// stream open on another at once: the stream is first shown to be live
// (an envelope sent through its own replica arrives), then the envelope
// sent through the other replica must arrive although nothing polls.
func crossSend(t *testing.T, local, remote *device, to *device, ch <-chan *clientv1.StreamInboxResponse, key string) {
	t.Helper()
	send(t, local, key+"-local", []*device{to}, []byte(key+" local"))
	if m := recvN(t, ch, 1)[0]; string(m.Ciphertext) != key+" local" {
		t.Fatalf("streamed %q, want %q", m.Ciphertext, key+" local")
	}
	start := time.Now()
	ids := send(t, remote, key+"-remote", []*device{to}, []byte(key+" remote"))
	m := recvN(t, ch, 1)[0]
	if m.EnvelopeId != ids[0] || string(m.Ciphertext) != key+" remote" {
		t.Fatalf("streamed %s %q, want %s %q", m.EnvelopeId, m.Ciphertext, ids[0], key+" remote")
	}
	t.Logf("%s: the other replica's envelope arrived %v after its send", key, time.Since(start))
}

// TestReplicasShareInboxes runs two replicas of one node on one
// PostgreSQL database: a stream open on either receives, without
// polling, what is sent through the other, and a revocation through
// either ends the streams open on the other.
func TestReplicasShareInboxes(t *testing.T) {
	dirA := newNodeDir(t, "postgres")
	dirB := copyNodeDir(t, dirA)
	a := startNodeIn(t, dirA, testConfig(t, dirA, nil))
	b := startNodeIn(t, dirB, testConfig(t, dirB, nil))
	a.createUser(t, "alice", "alice-password")
	a.createUser(t, "bob", "bob-password")

	alice := a.login(t, "alice", "alice-password")
	bob := b.login(t, "bob", "bob-password")
	bob2 := a.login(t, "bob", "bob-password")

	// bob streams on B; alice sends through A.
	bobCh, bobEnd := liveStream(t, bob)
	crossSend(t, onNode(t, alice, b), alice, bob, bobCh, "a-to-b")
	// bob2 streams on A; alice sends through B.
	bob2Ch, bob2End := liveStream(t, bob2)
	crossSend(t, alice, onNode(t, alice, b), bob2, bob2Ch, "b-to-a")

	// Revoking bob's device through A ends its stream on B.
	if _, err := a.admin.RevokeDevice(t.Context(), &adminv1.RevokeDeviceRequest{User: "bob", DeviceId: bob.id}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	wantStreamEnd(t, bobEnd, codes.Unauthenticated)
	select {
	case err := <-bob2End:
		t.Fatalf("revoking bob's device ended his other device's stream: %v", status.Convert(err))
	default:
	}
	// Deactivating bob through B ends bob2's stream on A.
	if _, err := b.admin.DeactivateUser(t.Context(), &adminv1.DeactivateUserRequest{User: "bob"}); err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	wantStreamEnd(t, bob2End, codes.Unauthenticated)
}
