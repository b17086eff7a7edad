package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/testbin"
)

// valisectlBinary builds the real valisectl once per test run.
func valisectlBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds valisectl; skipped with -short")
	}
	return testbin.Path(t, "valisectl")
}

// ctl runs valisectl against the node with stdin and returns stdout,
// stderr and the exit code.
func (n *testNode) ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return runCmdStdin(t, stdin, valisectlBinary(t), append([]string{"--data", n.dir}, args...)...)
}

// TestValisectlAgainstRealNode drives the real valisectl binary against a
// real node over its admin socket, as an admin would.
func TestValisectlAgainstRealNode(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	if _, errs, code := n.ctl(t, "alice-password\n", "user", "create", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("user create: exit %d: %s", code, errs)
	}
	if _, errs, code := n.ctl(t, "bob-password\n", "user", "create", "bob@localhost", "--password-stdin"); code != 0 {
		t.Fatalf("user create bob: exit %d: %s", code, errs)
	}
	if _, errs, code := n.ctl(t, "another-password\n", "user", "create", "alice", "--password-stdin"); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("duplicate create: exit %d: %s", code, errs)
	}
	if _, _, code := n.ctl(t, "", "user", "create", "carol", "--password", "secret-password"); code != 2 {
		t.Fatalf("password on argv: exit %d, want 2", code)
	}
	alice := n.login(t, "alice", "alice-password")

	out, errs, code := n.ctl(t, "", "--json", "user", "list", "--all")
	if code != 0 {
		t.Fatalf("user list: exit %d: %s", code, errs)
	}
	var list struct {
		Users []struct {
			User   string `json:"user"`
			Active bool   `json:"active"`
		} `json:"users"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("user list --json: %v\n%s", err, out)
	}
	if len(list.Users) != 2 || list.Users[0].User != "alice@localhost" || !list.Users[0].Active {
		t.Fatalf("user list = %+v", list.Users)
	}
	out, _, code = n.ctl(t, "", "device", "list", "alice")
	if code != 0 || !strings.Contains(out, alice.id) {
		t.Fatalf("device list: exit %d:\n%s", code, out)
	}
	if _, errs, code := n.ctl(t, "", "device", "revoke", "alice", alice.id); code != 0 {
		t.Fatalf("device revoke: exit %d: %s", code, errs)
	}
	if _, errs, code := n.ctl(t, "new-alice-password\n", "user", "reset-password", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("reset-password: exit %d: %s", code, errs)
	}
	for _, args := range [][]string{{"user", "deactivate", "bob"}, {"user", "reactivate", "bob"}} {
		if _, errs, code := n.ctl(t, "", args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	out, _, code = n.ctl(t, "", "user", "show", "alice")
	if code != 0 || !strings.Contains(out, "alice@localhost") {
		t.Fatalf("user show: exit %d:\n%s", code, out)
	}
	out, errs, code = n.ctl(t, "", "audit", "list", "--all")
	if code != 0 || strings.Contains(errs, "warn") {
		t.Fatalf("audit list: exit %d: %s", code, errs)
	}
	for _, action := range []string{"user.create", "device.revoke", "user.reset_password", "user.deactivate", "user.reactivate"} {
		if !strings.Contains(out, action) {
			t.Errorf("audit list lacks %s:\n%s", action, out)
		}
	}
	if _, errs, code := n.ctl(t, "", "user", "show", "nobody"); code != 1 || !strings.Contains(errs, "not found") {
		t.Fatalf("show unknown user: exit %d: %s", code, errs)
	}
	// The passwords went through stdin only and never reached the logs.
	for _, secret := range []string{"alice-password", "bob-password"} {
		if strings.Contains(n.logs.String(), secret) {
			t.Fatal("a password reached the node's logs")
		}
	}
}

// TestValisectlRemoteAdmin drives the real valisectl over the remote admin
// listener with the admin certificate valised init issued.
func TestValisectlRemoteAdmin(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	n := startNodeIn(t, dir, testConfig(t, dir, func(c *config.Config) { c.Listen.AdminRemote = "127.0.0.1:0" }))
	remote := []string{"--addr", n.ready.AdminRemote, "--server-name", "localhost",
		"--cert", filepath.Join(dir, "admin.crt"), "--key", filepath.Join(dir, "admin.key"), "--ca", filepath.Join(dir, "ca.crt")}
	if _, errs, code := n.ctl(t, "carol-password\n", append(remote, "user", "create", "carol", "--password-stdin")...); code != 0 {
		t.Fatalf("remote user create: exit %d: %s", code, errs)
	}
	out, errs, code := n.ctl(t, "", append(remote, "audit", "list")...)
	if code != 0 || !strings.Contains(out, "cert:admin@localhost") || !strings.Contains(out, "user.create") {
		t.Fatalf("remote audit list: exit %d: %s\n%s", code, errs, out)
	}
	// The node's own certificate is not an admin certificate.
	bad := []string{"--addr", n.ready.AdminRemote, "--server-name", "localhost",
		"--cert", filepath.Join(dir, "node.crt"), "--key", filepath.Join(dir, "node.key"), "--ca", filepath.Join(dir, "ca.crt")}
	if _, _, code := n.ctl(t, "", append(bad, "user", "list")...); code != 1 {
		t.Fatalf("valisectl with a non-admin certificate: exit %d, want 1", code)
	}
}
