package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// savedFiles are the files docs/ops/backups.md says to save beside the
// database (ca.key too, but offline: a node does not need it to serve).
// The restore tests copy exactly these into a fresh data directory.
var savedFiles = []string{"valised.yaml", "ca.crt", "node.crt", "node.key", "signing.key", "admin.crt", "admin.key"}

// runValised runs the real valised binary with args and returns stdout,
// stderr and the exit code.
func runValised(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runCmd(t, valisedBinary(t), args...)
}

// runCmd runs a program without the test's VALISE_ variables.
func runCmd(t *testing.T, name string, args ...string) (string, string, int) {
	t.Helper()
	return runCmdStdin(t, "", name, args...)
}

// runCmdStdin is runCmd with stdin.
func runCmdStdin(t *testing.T, stdin, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// freshDataDir copies the saved files (and extra) of the node in from into
// a new data directory, as an admin restoring onto a new machine would,
// and returns it.
func freshDataDir(t *testing.T, from string, extra ...string) string {
	t.Helper()
	root, err := os.MkdirTemp("", "vr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	dir := filepath.Join(root, "node")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(slices.Clone(savedFiles), extra...) {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatalf("save %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// allUsers lists every user of a node through its AdminService.
func allUsers(t *testing.T, a adminv1.AdminServiceClient) []string {
	t.Helper()
	var users []string
	tok := ""
	for {
		res, err := a.ListUsers(t.Context(), &adminv1.ListUsersRequest{PageSize: 100, PageToken: tok})
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		for _, u := range res.Users {
			users = append(users, u.User)
		}
		if tok = res.NextPageToken; tok == "" {
			return users
		}
	}
}

// readInboxUntil streams d's inbox from the start and returns every
// envelope before the one whose ciphertext is marker.
func readInboxUntil(t *testing.T, d *device, marker []byte) []*clientv1.StreamInboxResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := d.c.StreamInbox(d.ctx(ctx), &clientv1.StreamInboxRequest{})
	if err != nil {
		t.Fatalf("StreamInbox: %v", err)
	}
	var got []*clientv1.StreamInboxResponse
	timer := time.AfterFunc(60*time.Second, cancel)
	defer timer.Stop()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("StreamInbox after %d envelopes, before the marker: %v", len(got), err)
		}
		if bytes.Equal(m.Ciphertext, marker) {
			return got
		}
		got = append(got, m)
	}
}

// loadBody is message i of sender s in the load tests: it names both and
// is long enough that a torn write would show.
func loadBody(s, i int) []byte {
	b := fmt.Appendf(nil, "sender %d message %06d|", s, i)
	return append(b, bytes.Repeat([]byte{byte(s), byte(i), 0x5a, byte(i >> 8)}, 128)...)
}

// parseLoadBody returns the sender and number of a loadBody.
func parseLoadBody(b []byte) (s, i int, ok bool) {
	if _, err := fmt.Sscanf(string(b), "sender %d message %06d|", &s, &i); err != nil {
		return 0, 0, false
	}
	return s, i, bytes.Equal(b, loadBody(s, i))
}

// mustContain fails t unless s contains every want.
func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s: %q does not contain %q", what, s, w)
		}
	}
}
