package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/client"
)

// runCLI runs valise with args and stdin, returning the exit status and
// the output streams.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	tests := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		wantErr string
	}{
		{"no command", "", []string{"--state", state}, 2, "no command"},
		{"unknown command", "", []string{"--state", state, "frobnicate"}, 2, "unknown command"},
		{"password on argv", "", []string{"--state", state, "login", "--server", "h:1", "--user", "a@b", "--password", "hunter2"}, 2, "never accepted"},
		{"password= on argv", "", []string{"login", "--password=hunter2"}, 2, "never accepted"},
		{"passphrase on argv", "", []string{"--passphrase=hunter2", "recv"}, 2, "--passphrase-file"},
		{"login without server", "pw\n", []string{"--state", state, "login", "--user", "a@b", "--password-stdin"}, 2, "--server"},
		{"login without a terminal or --password-stdin", "pw\n", []string{"--state", state, "login", "--server", "h:1", "--user", "a@b"}, 2, "--password-stdin"},
		{"login with empty stdin", "", []string{"--state", state, "login", "--server", "h:1", "--user", "a@b", "--password-stdin"}, 1, "no password"},
		{"send without user", "", []string{"--state", state, "send"}, 2, "wrong number"},
		{"send empty text", "\n", []string{"--state", state, "send", "bob@x"}, 2, "empty message"},
		{"fingerprint needs a user", "", []string{"--state", state, "fingerprint"}, 2, "wrong number"},
		{"verify needs a fingerprint", "", []string{"--state", state, "verify", "bob@x"}, 2, "wrong number"},
		{"history takes one user", "", []string{"--state", state, "history", "a", "b"}, 2, "wrong number"},
		{"recv negative timeout", "", []string{"--state", state, "recv", "--timeout", "-1s"}, 2, "--timeout"},
		{"unknown flag", "", []string{"--state", state, "recv", "--bogus"}, 2, "bogus"},
		{"recv before login", "", []string{"--state", state, "recv"}, 1, "valise login"},
		{"send before login", "", []string{"--state", state, "send", "bob@x", "hi"}, 1, "valise login"},
		{"history before login", "", []string{"--state", state, "history"}, 1, "valise login"},
		{"logout before login", "", []string{"--state", state, "logout"}, 1, "no device is logged in"},
		{"missing passphrase file", "", []string{"--state", state, "--passphrase-file", filepath.Join(state, "nope"), "recv"}, 1, "--passphrase-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.wantErr)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Error("the secret was echoed")
			}
		})
	}
}

func TestLoginUnreachableNode(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	code, _, stderr := runCLI(t, "pw\n", "--state", state, "login", "--server", "127.0.0.1:1", "--user", "alice@localhost", "--password-stdin")
	if code != 1 || stderr == "" {
		t.Errorf("exit %d, stderr %q; want 1 and a message", code, stderr)
	}
	// Nothing is left behind that would block a later login.
	if _, err := os.Stat(filepath.Join(state, "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed login wrote a state")
	}
	if fi, err := os.Stat(state); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %o", fi.Mode().Perm())
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"send", "-h"}} {
		code, out, _ := runCLI(t, "", args...)
		if code != 0 || !strings.Contains(out, "Usage: valise") {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
	}
}

// TestUsageNamesEverything keeps the help in step with the commands and
// their flags.
func TestUsageNamesEverything(t *testing.T) {
	check := func(fs *flag.FlagSet) {
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(usageText, "--"+f.Name) {
				t.Errorf("usage does not describe --%s", f.Name)
			}
		})
	}
	for _, cmd := range commands() {
		if !strings.Contains(usageText, "\n  "+cmd.name) {
			t.Errorf("usage does not describe %q", cmd.name)
		}
		fs := newFlagSet(cmd.name)
		var g globals
		g.register(fs)
		cmd.setup(fs)
		check(fs)
	}
}

func TestParseInterleaved(t *testing.T) {
	fs := newFlagSet("send")
	accept := fs.Bool("accept-changed-keys", false, "")
	pos, err := parseInterleaved(fs, []string{"bob@x", "hello", "--accept-changed-keys", "world", "--", "--not-a-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if !*accept || strings.Join(pos, "|") != "bob@x|hello|world|--not-a-flag" {
		t.Errorf("accept=%v pos=%q", *accept, pos)
	}
}

func TestSanitize(t *testing.T) {
	tests := map[string]string{
		"plain text, ünïcode ✓": "plain text, ünïcode ✓",
		"line\nbreak\ttab":      "line\nbreak\ttab",
		"\x1b[2Jclear":          `\u001b[2Jclear`,
		"bell\a":                `bell\u0007`,
		"bidi \u202eevil":       `bidi \u202eevil`,
		"bad \xff utf8":         `bad \xff utf8`,
		"c1 \u009b":             `c1 \u009b`,
	}
	for in, want := range tests {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTrimNewline(t *testing.T) {
	for in, want := range map[string]string{"hi\n": "hi", "hi\r\n": "hi", "hi\n\n": "hi\n", "hi": "hi", "": ""} {
		if got := string(trimNewline([]byte(in))); got != want {
			t.Errorf("trimNewline(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorText(t *testing.T) {
	err := fmt.Errorf("client: send: %w", status.Error(codes.NotFound, "unknown recipient"))
	if got, want := errorText(err), "send: unknown recipient (NotFound)"; got != want {
		t.Errorf("errorText = %q, want %q", got, want)
	}
}

func TestPrinter(t *testing.T) {
	m := client.Message{
		ID: "0123", From: "alice@x", FromDevice: "DVA", To: "bob@x",
		Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Body: []byte("hi \x1b[31mred"),
	}
	var b bytes.Buffer
	if err := (printer{w: &b, json: true, self: "bob@x"}).print(m); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %q", b.String())
	}
	for k, want := range map[string]string{"from": "alice@x", "device": "DVA", "time": "2026-03-01T12:00:00Z", "text": "hi \x1b[31mred"} {
		if got[k] != want {
			t.Errorf("%s = %v, want %q", k, got[k], want)
		}
	}
	b.Reset()
	if err := (printer{w: &b, self: "bob@x"}).print(m); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "\x1b") || !strings.Contains(b.String(), "alice@x (DVA): hi ") {
		t.Errorf("text line = %q", b.String())
	}
}

// Errors quote what others control (the node's status messages, paths):
// they reach the terminal sanitized.
func TestErrorsAreSanitized(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	code, _, stderr := runCLI(t, "", "--state", state, "--passphrase-file", filepath.Join(state, "\x1b[2Jevil"), "recv")
	if code != 1 || strings.Contains(stderr, "\x1b") || !strings.Contains(stderr, `\u001b`) {
		t.Errorf("exit %d, stderr %q; want 1 and the escape shown escaped", code, stderr)
	}
}
