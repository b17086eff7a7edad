package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeBundle writes a PEM file of one CERTIFICATE block per body and
// returns its path with the SHA-256 hex of each body.
func writeBundle(t *testing.T, bodies ...string) (string, []string) {
	t.Helper()
	var b []byte
	var fps []string
	for _, body := range bodies {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(body)})...)
		sum := sha256.Sum256([]byte(body))
		fps = append(fps, hex.EncodeToString(sum[:]))
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, fps
}

func TestPeerAdd(t *testing.T) {
	f, dir := startFake(t)
	ca, fps := writeBundle(t, "root one", "root two")

	out := mustRun(t, dir, "", "peer", "add", "b.example", "--address", "b.example:7443", "--ca-bundle", ca)
	want := "added peer b.example at b.example:7443\n  trusted CA sha256 " + fps[0] + "\n  trusted CA sha256 " + fps[1] + "\n"
	if out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}

	out = mustRun(t, dir, "", "--json", "peer", "add", "--ca-bundle", ca, "c.example", "--address", "[::1]:7443")
	var got struct {
		Peer map[string]any `json:"peer"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	for _, field := range []string{"name", "address", "blocked", "ca_fingerprints", "created_time", "updated_time"} {
		if _, ok := got.Peer[field]; !ok {
			t.Errorf("peer lacks %q: %v", field, got.Peer)
		}
	}
	if names := f.peerNames(); !slices.Equal(names, []string{"b.example", "c.example"}) {
		t.Errorf("peers = %q", names)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"exists", []string{"b.example", "--address", "b.example:7443", "--ca-bundle", ca}, 1, "valisectl: peer b.example exists already (AlreadyExists)\n"},
		{"own name", []string{fakeNode, "--address", "x:1", "--ca-bundle", ca}, 1, "own name (InvalidArgument)\n"},
		{"malformed name", []string{"B_example", "--address", "x:1", "--ca-bundle", ca}, 1, "(InvalidArgument)\n"},
		{"bad address", []string{"d.example", "--address", "d.example", "--ca-bundle", ca}, 1, "valisectl: peer address must be HOST:PORT (InvalidArgument)\n"},
		{"no certificate", []string{"d.example", "--address", "d.example:1", "--ca-bundle", empty}, 1, "(InvalidArgument)\n"},
		{"missing file", []string{"d.example", "--address", "d.example:1", "--ca-bundle", filepath.Join(dir, "nope.pem")}, 1, "nope.pem"},
		{"address missing", []string{"d.example", "--ca-bundle", ca}, 2, "--address is required"},
		{"bundle missing", []string{"d.example", "--address", "d.example:1"}, 2, "--ca-bundle is required"},
		{"name missing", []string{"--address", "d.example:1", "--ca-bundle", ca}, 2, "peer add takes 1 argument(s), got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, dir, "", append([]string{"peer", "add"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, stderr %q", code, stdout, stderr, tt.wantCode, tt.wantStderr)
			}
		})
	}
	if names := f.peerNames(); len(names) != 2 {
		t.Errorf("peers after failed adds = %q, want 2", names)
	}
}

func TestPeerList(t *testing.T) {
	_, dir := startFake(t)
	ca, fps := writeBundle(t, "root")
	for _, n := range []string{"c.example", "a.example", "b.example"} {
		mustRun(t, dir, "", "peer", "add", n, "--address", n+":7443", "--ca-bundle", ca)
	}
	mustRun(t, dir, "", "peer", "block", "b.example")

	out := mustRun(t, dir, "", "peer", "list", "--all", "--page-size", "1")
	if got, want := userColumn(out), "a.example b.example c.example"; got != want {
		t.Errorf("peers = %q, want %q", got, want)
	}
	for _, want := range []string{"PEER", "ADDRESS", "STATE", "CA SHA-256", "a.example:7443", "listed", "blocked", fps[0]} {
		if !strings.Contains(out, want) {
			t.Errorf("table %q lacks %q", out, want)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "b.example ") && !strings.Contains(line, "blocked") {
			t.Errorf("b.example row %q is not blocked", line)
		}
	}

	code, out, stderr := runCLI(t, dir, "", "peer", "list", "--page-size", "2")
	if code != 0 || userColumn(out) != "a.example b.example" || !strings.Contains(stderr, `--page-token "k:b.example"`) {
		t.Errorf("first page: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	out = mustRun(t, dir, "", "--json", "peer", "list", "--page-size", "2")
	var got struct {
		Peers         []map[string]any `json:"peers"`
		NextPageToken string           `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if len(got.Peers) != 2 || got.NextPageToken != "k:b.example" {
		t.Errorf("got %d peers, next %q; want 2, k:b.example", len(got.Peers), got.NextPageToken)
	}
	if got.Peers[1]["blocked"] != true {
		t.Errorf("b.example = %v, want blocked", got.Peers[1])
	}
}

func TestPeerBlockUnblockRemove(t *testing.T) {
	f, dir := startFake(t)
	ca, _ := writeBundle(t, "root")
	mustRun(t, dir, "", "peer", "add", "b.example", "--address", "b.example:7443", "--ca-bundle", ca)

	for _, step := range []struct{ verb, want string }{
		{"block", "blocked peer b.example\n"},
		{"unblock", "unblocked peer b.example\n"},
		{"retry", "retrying deliveries to peer b.example now\n"},
		{"remove", "removed peer b.example\n"},
	} {
		if out := mustRun(t, dir, "", "peer", step.verb, "b.example"); out != step.want {
			t.Errorf("peer %s: stdout %q, want %q", step.verb, out, step.want)
		}
	}
	if names := f.peerNames(); len(names) != 0 {
		t.Errorf("peers after remove = %q", names)
	}
	if out := mustRun(t, dir, "", "--json", "audit", "list"); !strings.Contains(out, `"peer.block"`) || !strings.Contains(out, `"peer.remove"`) {
		t.Errorf("audit %q lacks peer events", out)
	}

	for _, verb := range []string{"block", "unblock", "retry", "remove"} {
		code, _, stderr := runCLI(t, dir, "", "peer", verb, "b.example")
		if want := "valisectl: peer b.example not found (NotFound)\n"; code != 1 || stderr != want {
			t.Errorf("peer %s of a removed peer: exit %d, stderr %q; want 1, %q", verb, code, stderr, want)
		}
		code, _, stderr = runCLI(t, dir, "", "peer", verb)
		if code != 2 || !strings.Contains(stderr, "takes 1 argument(s), got 0") {
			t.Errorf("peer %s without a name: exit %d, stderr %q", verb, code, stderr)
		}
	}
}

// TestPeerCABundleFromStdin checks that --ca-bundle - reads the bundle
// from standard input, and that an oversized input is refused before
// anything is sent.
func TestPeerCABundleFromStdin(t *testing.T) {
	f, dir := startFake(t)
	ca, fps := writeBundle(t, "root one")
	pemBytes, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, dir, string(pemBytes), "peer", "add", "b.example", "--address", "b.example:7443", "--ca-bundle", "-")
	if want := "added peer b.example at b.example:7443\n  trusted CA sha256 " + fps[0] + "\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	big := strings.Repeat("x", maxCABundleFile+1)
	code, stdout, stderr := runCLI(t, dir, big, "peer", "add", "c.example", "--address", "c.example:7443", "--ca-bundle", "-")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "standard input is larger than") {
		t.Errorf("oversized stdin: exit %d, stdout %q, stderr %q; want 1 and a size error", code, stdout, stderr)
	}
	if names := f.peerNames(); !slices.Equal(names, []string{"b.example"}) {
		t.Errorf("peers = %q, want only b.example", names)
	}
}
