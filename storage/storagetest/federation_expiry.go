package storagetest

import (
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// testOutboxNeedsExpiry: a send to another node without an expire time is
// refused alone (KindInvalid) and writes nothing; the other sends of the
// batch commit.
func testOutboxNeedsExpiry(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	alice, _ := mustDevice(t, s, "alice")
	bad := outboundSend(alice, "no-expiry", remote("b.example", "bob", "x"))
	bad.ExpireTime = time.Time{}
	good := outboundSend(alice, "good", remote("b.example", "bob", "y"))
	res := commit(t, s, &storage.Batch{Sends: []storage.SendOp{bad, good}})
	if valise.KindOf(res.Sends[0].Err) != valise.KindInvalid {
		t.Errorf("send without an expire time: got %v, want KindInvalid", res.Sends[0].Err)
	}
	if res.Sends[1].Err != nil {
		t.Fatalf("the other send: %v", res.Sends[1].Err)
	}
	if got := outbox(t, s, "b.example"); len(got) != 1 || string(got[0].Ciphertext) != "y" {
		t.Errorf("outbox = %+v, want only the good send's envelope", got)
	}
}
