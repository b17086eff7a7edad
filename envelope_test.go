package valise_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/valise-im/valise"
)

// checkUUIDv7 fails t unless id is a canonical lowercase UUIDv7 whose
// timestamp is ms.
func checkUUIDv7(t *testing.T, id valise.EnvelopeID, ms int64) {
	t.Helper()
	s := id.String()
	if len(s) != 36 {
		t.Fatalf("id %q is %d bytes, want 36", s, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				t.Fatalf("id %q has %q at %d, want '-'", s, c, i)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				t.Fatalf("id %q has %q at %d, want lowercase hex", s, c, i)
			}
		}
	}
	if s[14] != '7' {
		t.Errorf("id %q has version %q, want '7'", s, s[14])
	}
	if !slices.Contains([]byte("89ab"), s[19]) {
		t.Errorf("id %q has variant nibble %q, want one of 8, 9, a, b", s, s[19])
	}
	got, err := strconv.ParseInt(s[0:8]+s[9:13], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got != ms {
		t.Errorf("id %q has timestamp %d ms, want %d", s, got, ms)
	}
}

func TestNewEnvelopeIDShape(t *testing.T) {
	tests := []struct {
		name string
		at   time.Time
	}{
		{"now", time.Now()},
		{"epoch", time.UnixMilli(0)},
		{"sub-millisecond truncates", time.Date(2026, 3, 1, 12, 0, 0, 999_999, time.UTC)},
		{"far future (48-bit bound)", time.UnixMilli(1<<48 - 1)},
		{"other zone", time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 5*3600))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkUUIDv7(t, valise.NewEnvelopeID(tt.at), tt.at.UnixMilli())
		})
	}
}

func TestNewEnvelopeIDOrdersByMillisecond(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	steps := []time.Duration{time.Millisecond, time.Second, time.Hour, 24 * 365 * time.Hour}
	var ids []string
	at := start
	for i := range 200 {
		ids = append(ids, valise.NewEnvelopeID(at).String())
		at = at.Add(steps[i%len(steps)])
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids minted at increasing milliseconds are not in increasing order: %q", ids)
	}
}

func TestNewEnvelopeIDUnique(t *testing.T) {
	at := time.Now()
	seen := map[valise.EnvelopeID]bool{}
	for range 1000 {
		id := valise.NewEnvelopeID(at)
		if seen[id] {
			t.Fatalf("NewEnvelopeID returned %q twice in the same millisecond", id)
		}
		seen[id] = true
	}
}
