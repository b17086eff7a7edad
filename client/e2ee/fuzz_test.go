package e2ee_test

import (
	"testing"
	"time"

	"github.com/valise-im/valise/client/e2ee"
)

// FuzzOpen feeds arbitrary envelopes to Open with the known-answer keys:
// it must never panic, and whatever opens must be well formed. Seeds live
// in testdata/fuzz/FuzzOpen (the recorded envelopes among them).
func FuzzOpen(f *testing.F) {
	_, _, _, keys := katKeys(f)
	f.Add([]byte{1, 1, 0, 0, 3, 0xE8, 0x04, 0x60})
	f.Fuzz(func(t *testing.T, envelope []byte) {
		h, herr := e2ee.ParseHeader(envelope)
		m, err := e2ee.Open(envelope, katRecipient, katSender, keys)
		if err != nil {
			return
		}
		if herr != nil || h.Version != e2ee.Version {
			t.Fatalf("Open succeeded but ParseHeader: %+v, %v", h, herr)
		}
		if m.Sender != katSender || m.Recipient != katRecipient || len(m.Body) > e2ee.MaxBody || m.Time.Location() != time.UTC {
			t.Fatalf("Open returned %+v", m)
		}
	})
}
