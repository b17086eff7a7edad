package client

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/client/e2ee"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, text := range [][]byte{nil, []byte("hi"), bytes.Repeat([]byte("x"), maxTextFor("bob@localhost"))} {
		p, err := encodePayload("bob@localhost", text)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > e2ee.MaxBody {
			t.Errorf("payload of %d bytes is over e2ee.MaxBody", len(p))
		}
		to, got, err := decodePayload(p)
		if err != nil || to != "bob@localhost" || !bytes.Equal(got, text) {
			t.Errorf("decode = %q, %d bytes, %v", to, len(got), err)
		}
	}
	if _, err := encodePayload("bob@localhost", make([]byte, maxTextFor("bob@localhost")+1)); err == nil {
		t.Error("an over-long text was accepted")
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0}, {1, 0, 5, 'a'}} {
		if _, _, err := decodePayload(bad); err == nil {
			t.Errorf("decodePayload(%v) accepted", bad)
		}
	}
}

func historyClient(t *testing.T) *Client {
	t.Helper()
	cfg, err := Config{StateDir: t.TempDir()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := valise.ParseUserID("alice@localhost", "")
	return &Client{cfg: cfg, user: u, device: "DVAAAAAAAAAAAAAAAA"}
}

func TestHistoryFilterAndCrashRecovery(t *testing.T) {
	c := historyClient(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	msgs := []Message{
		{ID: "01", From: "bob@localhost", FromDevice: "DVB", To: "alice@localhost", Time: at, Body: []byte("hello alice")},
		{ID: "02", From: "alice@localhost", FromDevice: "DVA", To: "bob@localhost", Time: at, Body: []byte("hi bob")},
		{ID: "03", From: "carol@localhost", FromDevice: "DVC", To: "alice@localhost", Time: at, Body: []byte("from carol")},
	}
	for i, m := range msgs {
		if err := c.appendHistory(m); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			// A crash in the middle of an append leaves a partial record.
			f, _ := os.OpenFile(filepath.Join(c.cfg.StateDir, historyFile), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString(`{"id":"torn","fr`)
			f.Close()
		}
	}
	if got := fileMode(t, filepath.Join(c.cfg.StateDir, historyFile)); got != 0o600 {
		t.Errorf("history mode = %o, want 600", got)
	}
	all, err := c.History("")
	if err != nil {
		t.Fatal(err)
	}
	if ids := messageIDs(all); ids != "01,02,03" {
		t.Errorf("all = %s, want 01,02,03 (the torn record skipped, the next one whole)", ids)
	}
	bob, err := c.History("bob") // a bare localpart is on the device's node
	if err != nil {
		t.Fatal(err)
	}
	if ids := messageIDs(bob); ids != "01,02" {
		t.Errorf("history with bob = %s, want 01,02", ids)
	}
	if !bytes.Equal(bob[1].Body, []byte("hi bob")) || !bob[0].Time.Equal(at) {
		t.Errorf("record did not round-trip: %+v", bob[1])
	}
	if _, err := c.History("Not A User"); err == nil {
		t.Error("a malformed user was accepted")
	}
}

func messageIDs(ms []Message) string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return strings.Join(ids, ",")
}

func TestSeenReconcilesAndCompacts(t *testing.T) {
	c := historyClient(t)
	dir := c.cfg.StateDir
	s, err := loadSeen(dir, 5, time.Now, keepAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.add("a", "b"); err != nil {
		t.Fatal(err)
	}
	// A message stored in the history whose id never reached seen (a
	// crash in between) counts as seen after reloading.
	if err := c.appendHistory(Message{ID: "c", From: "bob@localhost"}); err != nil {
		t.Fatal(err)
	}
	s, err = loadSeen(dir, 5, time.Now, keepAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if !s.has(id) {
			t.Errorf("%s not seen after reload", id)
		}
	}
	for i := range 10 {
		if err := s.add(fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.order) > 10 {
		t.Errorf("seen holds %d ids, want at most twice the bound 5", len(s.order))
	}
	s, _ = loadSeen(dir, 5, time.Now, keepAll)
	if !s.has("9") || s.has("a") {
		t.Errorf("after compaction: has(9)=%v has(a)=%v; want true, false", s.has("9"), s.has("a"))
	}
	if got := fileMode(t, filepath.Join(dir, seenFile)); got != 0o600 {
		t.Errorf("seen mode = %o, want 600", got)
	}
}

// TestTailOffset: the scan back starts at a line start, with at least
// the lines and bytes asked for after it (a last line cut by a crash not
// counting as one).
func TestTailOffset(t *testing.T) {
	for _, tc := range []struct {
		file     string
		lines    int
		bytes    int64
		want     int64
		wantTail string
	}{
		{"aa\nbb\ncc\n", 1, 0, 3, "bb\ncc\n"},
		{"aa\nbb\ncc\n", 2, 0, 0, "aa\nbb\ncc\n"},
		{"aa\nbb\ncc\n", 5, 0, 0, "aa\nbb\ncc\n"},
		{"aa\nbb\ncc", 1, 0, 3, "bb\ncc"},
		{"aa\nbb\ncc\n", 0, 4, 3, "bb\ncc\n"},
		{"aa\nbb\ncc\n", 0, 7, 0, "aa\nbb\ncc\n"},
		{"", 3, 1 << 20, 0, ""},
		{strings.Repeat("x", 100<<10) + "\n" + strings.Repeat("y", 100<<10) + "\nz\n", 1, 0, 100<<10 + 1, strings.Repeat("y", 100<<10) + "\nz\n"},
	} {
		got, err := tailOffset(strings.NewReader(tc.file), int64(len(tc.file)), tc.lines, tc.bytes)
		if err != nil || got != tc.want || tc.file[got:] != tc.wantTail {
			t.Errorf("tailOffset(%.20q, %d lines, %d bytes) = %d, %v; want %d", tc.file, tc.lines, tc.bytes, got, err, tc.want)
		}
	}
}
