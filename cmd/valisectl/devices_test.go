package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDeviceList(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice", "DVCCCCCCCCCCCCCCCC", "DVAAAAAAAAAAAAAAAA", "DVBBBBBBBBBBBBBBBB")

	out := mustRun(t, dir, "", "device", "list", "alice", "--all", "--page-size", "1")
	if got, want := userColumn(out), "DVAAAAAAAAAAAAAAAA DVBBBBBBBBBBBBBBBB DVCCCCCCCCCCCCCCCC"; got != want {
		t.Errorf("devices = %q, want %q", got, want)
	}
	for _, want := range []string{"DEVICE", "NAME", "KEYS", "phone of alice", "yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("table %q lacks %q", out, want)
		}
	}

	out = mustRun(t, dir, "", "--json", "device", "list", "alice", "--page-size", "2")
	var got struct {
		Devices       []map[string]any `json:"devices"`
		NextPageToken string           `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if len(got.Devices) != 2 || got.NextPageToken != "k:DVBBBBBBBBBBBBBBBB" {
		t.Errorf("got %d devices, next %q; want 2, k:DVBBBBBBBBBBBBBBBB", len(got.Devices), got.NextPageToken)
	}
	for _, field := range []string{"device_id", "display_name", "created_time", "has_keys"} {
		if _, ok := got.Devices[0][field]; !ok {
			t.Errorf("device lacks %q: %v", field, got.Devices[0])
		}
	}
}

func TestDeviceRevoke(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice", "DVAAAAAAAAAAAAAAAA", "DVBBBBBBBBBBBBBBBB")

	out := mustRun(t, dir, "", "device", "revoke", "alice", "DVAAAAAAAAAAAAAAAA")
	if want := "revoked device DVAAAAAAAAAAAAAAAA of user alice\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if got, want := userColumn(mustRun(t, dir, "", "device", "list", "alice")), "DVBBBBBBBBBBBBBBBB"; got != want {
		t.Errorf("devices after revoke = %q, want %q", got, want)
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"revoked twice", []string{"alice", "DVAAAAAAAAAAAAAAAA"}, 1, "valisectl: device DVAAAAAAAAAAAAAAAA of user alice@node.test not found (NotFound)\n"},
		{"malformed device", []string{"alice", "phone"}, 1, "valisectl: device id \"phone\" is malformed (InvalidArgument)\n"},
		{"missing device", []string{"alice"}, 2, "device revoke takes 2 argument(s), got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, dir, "", append([]string{"device", "revoke"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, tt.wantCode, tt.wantStderr)
			}
		})
	}
}
