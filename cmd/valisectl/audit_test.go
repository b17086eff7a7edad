package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAuditList(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("bob", "DVAAAAAAAAAAAAAAAA")
	mustRun(t, dir, "correct horse battery\n", "user", "create", "alice", "--password-stdin")
	mustRun(t, dir, "", "user", "deactivate", "alice")
	mustRun(t, dir, "", "device", "revoke", "bob", "DVAAAAAAAAAAAAAAAA")

	code, out, stderr := runCLI(t, dir, "", "audit", "list", "--all", "--page-size", "2")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and no warning", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "SEQ TIME ACTOR ACTION TARGET DETAIL" {
		t.Errorf("header = %q", lines[0])
	}
	wantRows := [][]string{
		{"1", "2026-03-04T05:06:11Z", "unix:uid=1000", "user.create", "alice@node.test", "-"},
		{"2", "2026-03-04T05:06:13Z", "unix:uid=1000", "user.deactivate", "alice@node.test", "-"},
		{"3", "2026-03-04T05:06:14Z", "unix:uid=1000", "device.revoke", "bob@node.test", "device", "DVAAAAAAAAAAAAAAAA"},
	}
	if len(lines)-1 != len(wantRows) {
		t.Fatalf("got %d rows, want %d:\n%s", len(lines)-1, len(wantRows), out)
	}
	for i, want := range wantRows {
		if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("row %d = %q, want %q", i+1, got, want)
		}
	}
}

func TestAuditListTampered(t *testing.T) {
	f, dir := startFake(t)
	mustRun(t, dir, "correct horse battery\n", "user", "create", "alice", "--password-stdin")
	f.mu.Lock()
	f.tampered = true
	f.mu.Unlock()

	for _, args := range [][]string{{"audit", "list"}, {"--json", "audit", "list", "--all"}} {
		code, out, stderr := runCLI(t, dir, "", args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		if !strings.Contains(stderr, "warning: the audit log's hash chain does not verify") {
			t.Errorf("%q: stderr %q lacks the warning", args, stderr)
		}
		if args[0] != "--json" {
			continue
		}
		var got struct {
			Events []struct {
				Seq    string `json:"seq"` // int64 is a JSON string in protojson
				Action string `json:"action"`
				Hash   []byte `json:"hash"`
			} `json:"events"`
			ChainVerified *bool `json:"chain_verified"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		if got.ChainVerified == nil || *got.ChainVerified {
			t.Errorf("chain_verified = %v, want false", got.ChainVerified)
		}
		if len(got.Events) != 1 || got.Events[0].Seq != "1" || got.Events[0].Action != "user.create" {
			t.Errorf("events = %+v, want seq 1 user.create", got.Events)
		}
	}
}
