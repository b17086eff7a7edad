package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	_, dir := startFake(t)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help", []string{"help"}, 0, "Usage: valisectl", ""},
		{"-h", []string{"-h"}, 0, "Usage: valisectl", ""},
		{"--help after a command", []string{"user", "list", "--help"}, 0, "Usage: valisectl", ""},
		{"no command", nil, 2, "", "no command given\nRun 'valisectl help' for usage.\n"},
		{"unknown command", []string{"frobnicate"}, 2, "", "valisectl: unknown command \"frobnicate\"\n"},
		{"unknown subcommand", []string{"user", "delete", "alice"}, 2, "", "unknown user subcommand \"delete\""},
		{"missing subcommand", []string{"device"}, 2, "", "device needs a subcommand: list, revoke"},
		{"unknown flag", []string{"user", "list", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"unknown global flag", []string{"--bogus", "user", "list"}, 2, "", "flag provided but not defined: -bogus"},
		{"missing argument", []string{"user", "show"}, 2, "", "user show takes 1 argument(s), got 0"},
		{"extra argument", []string{"user", "show", "alice", "bob"}, 2, "", "user show takes 1 argument(s), got 2"},
		{"negative page size", []string{"user", "list", "--page-size", "-1"}, 2, "", "--page-size must be between 0"},
		{"bad timeout", []string{"--timeout", "0s", "user", "list"}, 2, "", "--timeout must be positive"},
		{"cert without addr", []string{"--cert", "c.pem", "user", "list"}, 2, "", "need --addr"},
		{"password-stdin checked before dialing", []string{"--socket", "/nonexistent/admin.sock", "user", "create", "alice"}, 2, "", "--password-stdin is required"},
		{"not found", []string{"user", "show", "bob"}, 1, "", "valisectl: user bob@node.test not found (NotFound)\n"},
		{"bad page token", []string{"user", "list", "--page-token", "bogus"}, 1, "", "valisectl: malformed page token (InvalidArgument)\n"},
		{"page size over the node's limit", []string{"audit", "list", "--page-size", "5000"}, 1, "", "(InvalidArgument)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, dir, "", tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) || tt.wantStdout == "" && stdout != "" {
				t.Errorf("stdout = %q, want %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) || tt.wantStderr == "" && stderr != "" {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestSocketFlagAndEnv(t *testing.T) {
	f, dir := startFake(t)
	f.addUser("alice")
	sock := filepath.Join(dir, "admin.sock")
	var out, errOut bytes.Buffer

	// --socket wins over --data, and may come after the command.
	args := []string{"--data", t.TempDir(), "user", "show", "alice", "--socket", sock}
	if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("--socket: exit %d: %s", code, errOut.String())
	}

	t.Setenv("VALISE_DATA", dir)
	if code := run(t.Context(), []string{"user", "show", "alice"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("$VALISE_DATA: exit %d: %s", code, errOut.String())
	}

	errOut.Reset()
	code := run(t.Context(), []string{"--data", t.TempDir(), "user", "show", "alice"}, strings.NewReader(""), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "is valised running?") {
		t.Errorf("no socket: exit %d, stderr %q; want 1 and a hint", code, errOut.String())
	}
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos []string
		wantAll bool
		wantTok string
	}{
		{"flags first", []string{"--all", "--page-token", "t", "alice"}, []string{"alice"}, true, "t"},
		{"flags last", []string{"alice", "--all"}, []string{"alice"}, true, ""},
		{"flags between", []string{"alice", "--page-token=t", "DV1", "-all"}, []string{"alice", "DV1"}, true, "t"},
		{"double dash", []string{"--all", "--", "--page-token", "x"}, []string{"--page-token", "x"}, true, ""},
		{"nothing", nil, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("test")
			var p pageFlags
			p.register(fs)
			pos, err := parseInterleaved(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) || p.all != tt.wantAll || p.token != tt.wantTok {
				t.Errorf("got %q all=%v token=%q; want %q all=%v token=%q", pos, p.all, p.token, tt.wantPos, tt.wantAll, tt.wantTok)
			}
		})
	}
}

// TestUsageListsEverything keeps the help text in step with the commands
// and their flags.
func TestUsageListsEverything(t *testing.T) {
	for _, cmd := range commands() {
		if !strings.Contains(usageText, "\n  "+cmd.name+" ") && !strings.Contains(usageText, "\n  "+cmd.name+"\n") {
			t.Errorf("usage lacks command %q", cmd.name)
		}
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		g := defaultGlobals()
		g.register(fs)
		if cmd.password {
			fs.Bool("password-stdin", false, "")
		}
		cmd.setup(fs)
		fs.VisitAll(func(f *flag.Flag) {
			if !regexp.MustCompile(`\n  --` + f.Name + ` `).MatchString(usageText) {
				t.Errorf("usage lacks flag --%s of %q", f.Name, cmd.name)
			}
		})
	}
}

func TestPasswordFromDeviceRefused(t *testing.T) {
	f, dir := startFake(t)
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"--data", dir, "user", "create", "alice", "--password-stdin"}, devNull, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "stdin is a terminal or device") {
		t.Errorf("exit %d, stderr %q; want 1 and a refusal", code, errOut.String())
	}
	if got := f.calledN("CreateUser"); got != 0 {
		t.Errorf("CreateUser called %d times, want 0", got)
	}
}
