package postgres

import (
	"strings"
	"testing"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func TestParseEvent(t *testing.T) {
	const dev = valise.DeviceID("DVABCDEFGHIJKLMN23")
	long := strings.Repeat("a", valise.MaxLocalpartLen)
	good := map[string]storage.Event{
		inboxPayload("alice", dev):          {Kind: storage.EventInbox, User: "alice", Device: dev},
		revokePayload("bob.b-2_x", dev):     {Kind: storage.EventRevoke, User: "bob.b-2_x", Device: dev},
		revokePayload("alice", ""):          {Kind: storage.EventRevoke, User: "alice"},
		inboxPayload(long, dev):             {Kind: storage.EventInbox, User: long, Device: dev},
		"r alice -":                         {Kind: storage.EventRevoke, User: "alice"},
		"i 0day DVABCDEFGHIJKLMN23":         {Kind: storage.EventInbox, User: "0day", Device: dev},
		"r " + long + " DVABCDEFGHIJKLMN23": {Kind: storage.EventRevoke, User: long, Device: dev},
	}
	for p, want := range good {
		if len(p) > 100 {
			t.Errorf("payload %q is %d bytes, want at most 100", p, len(p))
		}
		if got, origin, ok := parseEvent(p); !ok || got != want || origin != "" {
			t.Errorf("parseEvent(%q) = %+v, %q, %v; want %+v", p, got, origin, ok, want)
		}
	}
	for _, p := range []string{
		"",
		"i",
		"i alice",
		"i alice " + string(dev) + " x",
		"i  alice " + string(dev),
		"i alice  " + string(dev),
		"i alice " + string(dev) + " ",
		"x alice " + string(dev),
		"I alice " + string(dev),
		"i Alice " + string(dev),
		"i " + long + "a " + string(dev),
		"i alice -",
		"i alice DVABCDEFGHIJKLMN2",
		"i alice DVabcdefghijklmn23",
		"r alice DV1BCDEFGHIJKLMN23",
		"r  -",
		"r alice\n" + string(dev),
		"i alice " + string(dev) + " 0123456789a",
		"i alice " + string(dev) + " 0123456789abc",
		"i alice " + string(dev) + " 0123456789aB",
		"r alice " + string(dev) + " 0123456789ab",
		"i alice " + string(dev) + " 0123456789ab x",
	} {
		if got, _, ok := parseEvent(p); ok {
			t.Errorf("parseEvent(%q) = %+v, want malformed", p, got)
		}
	}
}

func TestParseEventOrigin(t *testing.T) {
	const dev = valise.DeviceID("DVABCDEFGHIJKLMN23")
	o := newOrigin()
	if !validOrigin(o) {
		t.Fatalf("newOrigin() = %q, not a valid origin", o)
	}
	p := sentPayload("alice", dev, o)
	got, origin, ok := parseEvent(p)
	if want := (storage.Event{Kind: storage.EventInbox, User: "alice", Device: dev}); !ok || got != want || origin != o {
		t.Errorf("parseEvent(%q) = %+v, %q, %v; want %+v, %q", p, got, origin, ok, want, o)
	}
	if len(sentPayload(strings.Repeat("a", valise.MaxLocalpartLen), dev, o)) > 105 {
		t.Error("a sent payload is longer than the documented 105 bytes")
	}
}
