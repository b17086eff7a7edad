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
		if got, ok := parseEvent(p); !ok || got != want {
			t.Errorf("parseEvent(%q) = %+v, %v; want %+v", p, got, ok, want)
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
	} {
		if got, ok := parseEvent(p); ok {
			t.Errorf("parseEvent(%q) = %+v, want malformed", p, got)
		}
	}
}
