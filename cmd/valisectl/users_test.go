package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUserCreate(t *testing.T) {
	tests := []struct {
		name       string
		stdin      string
		args       []string
		wantCode   int
		wantPW     string // password the node received; "" for no user
		wantStdout string
		wantStderr string
	}{
		{
			name:       "password from stdin",
			stdin:      "correct horse battery\n",
			args:       []string{"user", "create", "alice", "--password-stdin"},
			wantPW:     "correct horse battery",
			wantStdout: "created user alice@node.test\n",
		},
		{
			name:   "only the first line, CRLF stripped, spaces kept",
			stdin:  " spaced pass phrase \r\nsecond line\n",
			args:   []string{"user", "create", "--password-stdin", "alice@node.test"},
			wantPW: " spaced pass phrase ",
		},
		{
			name:   "no trailing newline",
			stdin:  "no-newline-pw",
			args:   []string{"--json", "user", "create", "alice", "--password-stdin"},
			wantPW: "no-newline-pw",
		},
		{
			name:       "password on argv refused",
			stdin:      "correct horse battery\n",
			args:       []string{"user", "create", "alice", "--password", "hunter2hunter2"},
			wantCode:   2,
			wantStderr: "never accepted as arguments",
		},
		{
			name:       "password=value on argv refused",
			args:       []string{"user", "create", "alice", "-password=hunter2hunter2"},
			wantCode:   2,
			wantStderr: "never accepted as arguments",
		},
		{
			name:       "password-stdin missing",
			stdin:      "correct horse battery\n",
			args:       []string{"user", "create", "alice"},
			wantCode:   2,
			wantStderr: "--password-stdin is required",
		},
		{
			name:       "empty stdin",
			args:       []string{"user", "create", "alice", "--password-stdin"},
			wantCode:   1,
			wantStderr: "no password on stdin",
		},
		{
			name:       "short password rejected by the node",
			stdin:      "short\n",
			args:       []string{"user", "create", "alice", "--password-stdin"},
			wantCode:   1,
			wantStderr: "valisectl: password must be 8 to 1,024 bytes (InvalidArgument)\n",
		},
		{
			name:       "malformed name rejected by the node",
			stdin:      "correct horse battery\n",
			args:       []string{"user", "create", "Alice!", "--password-stdin"},
			wantCode:   1,
			wantStderr: "(InvalidArgument)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, dir := startFake(t)
			code, stdout, stderr := runCLI(t, dir, tt.stdin, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if got := f.password("alice@node.test"); got != tt.wantPW {
				t.Errorf("node got password %q, want %q", got, tt.wantPW)
			}
			if tt.wantStdout != "" && stdout != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
			for _, secret := range []string{"hunter2", "correct horse", "spaced pass", "no-newline-pw"} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("output %q leaks the password", stdout+stderr)
				}
			}
		})
	}
}

func TestUserCreateExists(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice")
	code, _, stderr := runCLI(t, dir, "correct horse battery\n", "user", "create", "alice", "--password-stdin")
	if want := "valisectl: user alice@node.test already exists (AlreadyExists)\n"; code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestUserCreateJSON(t *testing.T) {
	_, dir := startFake(t)
	out := mustRun(t, dir, "correct horse battery\n", "user", "create", "alice", "--password-stdin", "--json")
	var got struct {
		User map[string]any `json:"user"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if got.User["user"] != "alice@node.test" || got.User["active"] != true {
		t.Errorf("user = %v, want alice@node.test, active", got.User)
	}
	for _, field := range []string{"created_time", "updated_time"} {
		if _, ok := got.User[field]; !ok {
			t.Errorf("user has no %q: %v", field, got.User)
		}
	}
}

func TestUserList(t *testing.T) {
	f, dir := startFake(t)
	for _, u := range []string{"gina", "bob", "eve", "alice", "dan", "carol", "finn"} {
		f.addUser(u)
	}

	code, out, stderr := runCLI(t, dir, "", "user", "list", "--page-size", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got, want := userColumn(out), "alice@node.test bob@node.test carol@node.test"; got != want {
		t.Errorf("first page = %q, want %q", got, want)
	}
	if !strings.Contains(out, "USER") || !strings.Contains(out, "2026-03-04T05:06") {
		t.Errorf("table %q lacks the header or an RFC 3339 time", out)
	}
	if want := `--page-token "k:carol@node.test"`; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q lacks the hint %q", stderr, want)
	}

	out = mustRun(t, dir, "", "user", "list", "--page-size", "3", "--page-token", "k:carol@node.test")
	if got, want := userColumn(out), "dan@node.test eve@node.test finn@node.test"; got != want {
		t.Errorf("second page = %q, want %q", got, want)
	}

	before := f.calledN("ListUsers")
	out = mustRun(t, dir, "", "user", "list", "--all", "--page-size", "3")
	if got, want := userColumn(out), "alice@node.test bob@node.test carol@node.test dan@node.test eve@node.test finn@node.test gina@node.test"; got != want {
		t.Errorf("--all = %q, want %q", got, want)
	}
	if got := f.calledN("ListUsers") - before; got != 3 {
		t.Errorf("--all made %d calls, want 3", got)
	}
}

func TestUserListJSON(t *testing.T) {
	f, dir := startFake(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		f.addUser(u)
	}
	tests := []struct {
		name      string
		args      []string
		wantUsers int
		wantNext  string
	}{
		{"one page", []string{"--json", "user", "list", "--page-size", "2"}, 2, "k:bob@node.test"},
		{"all pages", []string{"user", "list", "--page-size", "2", "--all", "--json"}, 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRun(t, dir, "", tt.args...)
			var got struct {
				Users         []map[string]any `json:"users"`
				NextPageToken *string          `json:"next_page_token"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("stdout %q: %v", out, err)
			}
			if len(got.Users) != tt.wantUsers {
				t.Errorf("got %d users, want %d", len(got.Users), tt.wantUsers)
			}
			if got.NextPageToken == nil || *got.NextPageToken != tt.wantNext {
				t.Errorf("next_page_token = %v, want %q", got.NextPageToken, tt.wantNext)
			}
			if len(got.Users) > 0 && (got.Users[0]["user"] != "alice@node.test" || got.Users[0]["active"] != true) {
				t.Errorf("users[0] = %v, want alice@node.test, active", got.Users[0])
			}
		})
	}
}

func TestUserShow(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice", "DVAAAAAAAAAAAAAAAA", "DVBBBBBBBBBBBBBBBB")

	out := mustRun(t, dir, "", "user", "show", "alice")
	for _, want := range []string{"user:", "alice@node.test", "active:", "yes", "devices:", "2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}

	out = mustRun(t, dir, "", "--json", "user", "show", "alice@node.test")
	var got struct {
		User        struct{ User string }
		DeviceCount int `json:"device_count"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if got.User.User != "alice@node.test" || got.DeviceCount != 2 {
		t.Errorf("got %+v, want alice@node.test with 2 devices", got)
	}
}

func TestUserDeactivateReactivate(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice", "DVAAAAAAAAAAAAAAAA")
	active := func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.users["alice@node.test"].Active
	}

	if out, want := mustRun(t, dir, "", "user", "deactivate", "alice"), "deactivated user alice\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if active() {
		t.Error("alice is active after deactivate")
	}
	if out := mustRun(t, dir, "", "user", "show", "alice"); !strings.Contains(out, "no") {
		t.Errorf("show after deactivate = %q, want active: no", out)
	}
	if out, want := mustRun(t, dir, "", "--json", "user", "reactivate", "alice"), "{}\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if !active() {
		t.Error("alice is inactive after reactivate")
	}
	code, _, stderr := runCLI(t, dir, "", "user", "deactivate", "bob")
	if want := "valisectl: user bob@node.test not found (NotFound)\n"; code != 1 || stderr != want {
		t.Errorf("deactivate bob: exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
}

func TestUserResetPassword(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice")
	out := mustRun(t, dir, "new pass phrase\nignored\n", "user", "reset-password", "alice", "--password-stdin")
	if want := "reset the password of user alice\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if got, want := f.password("alice@node.test"), "new pass phrase"; got != want {
		t.Errorf("node got password %q, want %q", got, want)
	}
	if code, _, _ := runCLI(t, dir, "", "user", "reset-password", "alice"); code != 2 {
		t.Errorf("without --password-stdin: exit %d, want 2", code)
	}
}
