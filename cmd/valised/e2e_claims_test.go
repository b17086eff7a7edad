package main

import (
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// TestConcurrentClaims claims one device's one-time keys from several
// devices at once over the wire: each key is handed out exactly once, and
// the claims past the stock get the signed prekey as a fallback.
func TestConcurrentClaims(t *testing.T) {
	const (
		keys     = 20
		claimers = 5
		each     = 8
	)
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		n.createUser(t, "alice", "alice-password")
		n.createUser(t, "bob", "bob-password")
		bob := n.login(t, "bob", "bob-password")
		if got := publishKeys(t, bob, 1000, keys); got != keys {
			t.Fatalf("one-time keys after publish = %d, want %d", got, keys)
		}
		var devs []*device
		for range claimers {
			devs = append(devs, n.login(t, "alice", "alice-password"))
		}

		type answer struct {
			claimer int
			res     *clientv1.ClaimOneTimeKeyResponse
			err     error
		}
		answers := make(chan answer, claimers*each)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, d := range devs {
			wg.Go(func() {
				<-start
				for range each {
					res, err := d.c.ClaimOneTimeKey(d.ctx(t.Context()), &clientv1.ClaimOneTimeKeyRequest{User: "bob@localhost", DeviceId: bob.id})
					answers <- answer{i, res, err}
				}
			})
		}
		close(start)
		wg.Wait()
		close(answers)

		handed := map[uint32]int{} // one-time key id -> claimer
		fallbacks := 0
		for a := range answers {
			if a.err != nil {
				t.Fatalf("claimer %d: %v", a.claimer, a.err)
			}
			k := a.res.Key
			if a.res.DeviceId != bob.id {
				t.Errorf("claim answered for device %q, want %q", a.res.DeviceId, bob.id)
			}
			if a.res.Fallback {
				fallbacks++
				if k.KeyId != 1 || string(k.PublicKey) != "spk-"+bob.id || string(k.Signature) != "sig" {
					t.Errorf("fallback = key %d %q %q, want bob's signed prekey 1", k.KeyId, k.PublicKey, k.Signature)
				}
				continue
			}
			if k.KeyId < 1000 || k.KeyId >= 1000+keys {
				t.Errorf("claimer %d got one-time key %d, which bob never published", a.claimer, k.KeyId)
			}
			if want := fmt.Sprintf("otk-%d", k.KeyId); string(k.PublicKey) != want {
				t.Errorf("one-time key %d has public key %q, want %q", k.KeyId, k.PublicKey, want)
			}
			if prev, dup := handed[k.KeyId]; dup {
				t.Errorf("one-time key %d handed out twice, to claimers %d and %d", k.KeyId, prev, a.claimer)
			}
			handed[k.KeyId] = a.claimer
		}
		if len(handed) != keys || fallbacks != claimers*each-keys {
			t.Fatalf("%d distinct one-time keys and %d fallbacks, want %d and %d", len(handed), fallbacks, keys, claimers*each-keys)
		}
		cnt, err := bob.c.CountOneTimeKeys(bob.ctx(t.Context()), &clientv1.CountOneTimeKeysRequest{})
		if err != nil || cnt.OneTimeKeyCount != 0 {
			t.Fatalf("count after the claims = %v, %v; want 0", cnt, err)
		}

		// A claimed id cannot come back; new ids replenish the stock.
		_, err = bob.c.PublishDeviceKeys(bob.ctx(t.Context()), &clientv1.PublishDeviceKeysRequest{
			OneTimePrekeys: []*clientv1.PreKey{{KeyId: 1000, PublicKey: []byte("otk-again"), Signature: []byte("sig")}},
		})
		wantCode(t, err, codes.AlreadyExists)
		if got := publishKeys(t, bob, 2000, 3); got != 3 {
			t.Fatalf("one-time keys after republishing = %d, want 3", got)
		}
		for _, want := range []uint32{2000, 2001, 2002, 1} {
			res, err := devs[0].c.ClaimOneTimeKey(devs[0].ctx(t.Context()), &clientv1.ClaimOneTimeKeyRequest{User: "bob", DeviceId: bob.id})
			if err != nil {
				t.Fatal(err)
			}
			if res.Key.KeyId != want || res.Fallback != (want == 1) {
				t.Fatalf("claim after republishing = key %d fallback %v, want key %d fallback %v", res.Key.KeyId, res.Fallback, want, want == 1)
			}
		}
	})
}
