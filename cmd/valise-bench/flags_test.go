package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestUsageErrors: bad invocations exit 2 with a message naming the
// problem, before anything is started.
func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no scenario", nil, "usage: valise-bench SCENARIO"},
		{"unknown scenario", []string{"fast"}, `unknown scenario "fast"`},
		{"bad backend", []string{"local", "--backend", "mysql"}, `--backend "mysql"`},
		{"postgres without dsn", []string{"local", "--backend", "postgres"}, "--postgres DSN"},
		{"dsn without postgres", []string{"local", "--postgres", "postgres://x"}, "--postgres needs --backend postgres"},
		{"zero senders", []string{"local", "--senders", "0"}, "--senders must be at least 1"},
		{"small size", []string{"local", "--size", "3"}, "--size must be between"},
		{"negative rate", []string{"local", "--rate", "-1"}, "--rate must not be negative"},
		{"bad target", []string{"local", "--target", "client=127.0.0.1:1"}, "client, ca, admin and name are required"},
		{"target key", []string{"local", "--target", "client=a:1,ca=x,admin=y,name=z,colour=red"}, `unknown key "colour"`},
		{"extra argument", []string{"local", "extra"}, "unexpected arguments"},
		{"too many one-time keys", []string{"idle", "--one-time-keys", "501"}, "at most 500"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.want)
			}
		})
	}
}

// TestPayload: the body carries the sequence number and the time, and
// anything else is refused.
func TestPayload(t *testing.T) {
	at := timeAt(1_700_000_000_123_456_789)
	b := encodeBody(1024, 7, 42, at)
	if len(b) != 1024 {
		t.Errorf("body of %d bytes, want 1024", len(b))
	}
	seq, got, err := decodeBody(b)
	if err != nil || seq != 42 || !got.Equal(at) {
		t.Errorf("decode = %d, %v, %v; want 42, %v", seq, got, err, at)
	}
	if _, _, err := decodeBody([]byte("hello, this is not a bench message")); err == nil {
		t.Error("a foreign body decoded")
	}
}

// TestTrackerCounts: the tracker finds lost, duplicated and misdelivered
// envelopes.
func TestTrackerCounts(t *testing.T) {
	tr := newTracker()
	now := timeAt(2_000_000_000_000_000_000)
	a, b, c, d := tr.begin(0, true), tr.begin(1, true), tr.begin(0, true), tr.begin(1, true)
	for _, s := range []uint64{a, b, c} {
		tr.done(s, nil)
	}
	tr.done(d, errTest)
	tr.deliver(0, encodeBody(64, 0, a, now), now)
	tr.deliver(0, encodeBody(64, 0, a, now), now) // duplicate
	tr.deliver(0, encodeBody(64, 0, b, now), now) // b was for receiver 1
	tr.deliver(1, encodeBody(64, 0, d, now), now) // d failed to send
	got := tr.counts()
	want := counts{sent: 3, delivered: 1, duplicated: 1, unexpected: 2, failed: 1, errs: 1, lost: 2}
	if got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
}

var errTest = errorString("test error")

type errorString string

func (e errorString) Error() string { return string(e) }
