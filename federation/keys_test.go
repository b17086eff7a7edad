package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/ratelimit"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
)

func rateOf(burst int, perSecond float64) ratelimit.Rate {
	return ratelimit.Rate{Burst: burst, PerSecond: perSecond}
}

// publish gives a device an identity key, signed prekey 1 and one-time
// keys 100, 101, ….
func publish(t *testing.T, n *testNode, local string, dev valise.DeviceID, oneTime int) {
	t.Helper()
	k := storage.PublishKeys{
		IdentityKey:  []byte("identity-" + string(dev)),
		SignedPreKey: valise.PreKey{KeyID: 1, PublicKey: []byte("spk-" + string(dev)), Signature: []byte("sig")},
	}
	for i := range oneTime {
		k.OneTimeKeys = append(k.OneTimeKeys, valise.PreKey{KeyID: uint32(100 + i), PublicKey: []byte(fmt.Sprint("otk-", i)), Signature: []byte("sig")})
	}
	if _, err := n.store.PublishKeys(t.Context(), local, dev, k, 500); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteKeys(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	aliceDev := a.addUser("alice")
	alice := valise.UserID{Localpart: "alice", Node: nodeA}
	bobDev := b.addUser("bob")
	bobDev2 := b.addDevice("bob")
	publish(t, b, "bob", bobDev, 2)
	publish(t, b, "bob", bobDev2, 0)
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	ctx := t.Context()

	keys, err := a.out.DeviceKeys(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	want, err := b.store.GetDeviceKeys(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || len(want) != 2 {
		t.Fatalf("got %d device keys, want 2", len(keys))
	}
	for i := range keys {
		g, w := keys[i], want[i]
		if g.Device != w.Device || !bytes.Equal(g.IdentityKey, w.IdentityKey) || g.SignedPreKey.KeyID != w.SignedPreKey.KeyID ||
			!bytes.Equal(g.SignedPreKey.PublicKey, w.SignedPreKey.PublicKey) {
			t.Errorf("keys[%d] = %+v, want %+v", i, g, w)
		}
	}
	pinned, err := a.store.PinnedSigningKeys(ctx, nodeB)
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned) != 1 || pinned[0].KeyID != b.signer.KeyID() || !bytes.Equal(pinned[0].PublicKey, b.signer.Keys()[0].PublicKey) {
		t.Errorf("pinned = %+v, want b's key", pinned)
	}

	// An unknown user has no keys, the same shape of answer.
	none, err := a.out.DeviceKeys(ctx, valise.UserID{Localpart: "nobody", Node: nodeB})
	if err != nil || len(none) != 0 {
		t.Errorf("unknown user: %v, %v", none, err)
	}

	// Claims: the one-time keys in order, then the signed prekey.
	for _, w := range []struct {
		id       uint32
		fallback bool
	}{{100, false}, {101, false}, {1, true}} {
		k, fallback, err := a.out.ClaimOneTimeKey(ctx, alice, aliceDev, bob, bobDev)
		if err != nil {
			t.Fatal(err)
		}
		if k.KeyID != w.id || fallback != w.fallback {
			t.Errorf("claimed key %d (fallback %v), want %d (%v)", k.KeyID, fallback, w.id, w.fallback)
		}
	}
	_, _, err = a.out.ClaimOneTimeKey(ctx, alice, aliceDev, bob, valise.NewDeviceID())
	if valise.KindOf(err) != valise.KindNotFound {
		t.Errorf("claim of an unknown device: %v, want NotFound", err)
	}
	_, err = a.out.DeviceKeys(ctx, valise.UserID{Localpart: "x", Node: nodeC})
	if valise.KindOf(err) != valise.KindPermission {
		t.Errorf("keys of a non-peer's user: %v, want Permission", err)
	}
	_, _, err = a.out.ClaimOneTimeKey(ctx, valise.UserID{Localpart: "eve", Node: nodeC}, aliceDev, bob, bobDev)
	if valise.KindOf(err) != valise.KindInvalid {
		t.Errorf("claim for a requester of another node: %v, want Invalid", err)
	}
}

// tamper returns a hook that lets f change each answer of b.
func tamper(f func(resp any) any) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return resp, err
		}
		return f(resp), nil
	}
}

func TestRemoteKeysRefused(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	aliceDev := a.addUser("alice")
	alice := valise.UserID{Localpart: "alice", Node: nodeA}
	bobDev := b.addUser("bob")
	publish(t, b, "bob", bobDev, 10)
	carolDev := b.addUser("carol")
	publish(t, b, "carol", carolDev, 10)
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	ctx := t.Context()
	// Pin b's key first, so that the cases below fail only for their own
	// reason.
	if _, err := a.out.DeviceKeys(ctx, bob); err != nil {
		t.Fatal(err)
	}
	unavailable := func(name string, err error) {
		t.Helper()
		if valise.KindOf(err) != valise.KindUnavailable {
			t.Errorf("%s: %v, want Unavailable", name, err)
		}
	}

	b.setHook(tamper(func(resp any) any {
		switch r := resp.(type) {
		case *federationv1.QueryDeviceKeysResponse:
			r.Signature[0] ^= 1
		case *federationv1.ClaimOneTimeKeyResponse:
			r.SignedClaim[len(r.SignedClaim)-1] ^= 1
		}
		return resp
	}))
	_, err := a.out.DeviceKeys(ctx, bob)
	unavailable("tampered signature", err)
	_, _, err = a.out.ClaimOneTimeKey(ctx, alice, aliceDev, bob, bobDev)
	unavailable("tampered claim", err)

	// Validly signed, but for another user, device or requester.
	b.setHook(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		switch r := req.(type) {
		case *federationv1.QueryDeviceKeysRequest:
			r.User = "carol@" + string(nodeB)
		case *federationv1.ClaimOneTimeKeyRequest:
			r.User, r.DeviceId = "carol@"+string(nodeB), string(carolDev)
		}
		return handler(ctx, req)
	})
	_, err = a.out.DeviceKeys(ctx, bob)
	unavailable("keys of another user", err)
	_, _, err = a.out.ClaimOneTimeKey(ctx, alice, aliceDev, bob, bobDev)
	unavailable("claim of another user's key", err)
	b.setHook(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*federationv1.ClaimOneTimeKeyRequest); ok {
			r.RequesterDeviceId = "DVAAAAAAAAAAAAAAAA"
		}
		return handler(ctx, req)
	})
	_, _, err = a.out.ClaimOneTimeKey(ctx, alice, aliceDev, bob, bobDev)
	unavailable("claim for another requester", err)

	// Signed under an unknown key id: fetched, not found, refused.
	b.setHook(tamper(func(resp any) any {
		if r, ok := resp.(*federationv1.QueryDeviceKeysResponse); ok {
			r.SigningKeyId = "ed25519:unknown"
		}
		return resp
	}))
	_, err = a.out.DeviceKeys(ctx, bob)
	unavailable("unknown key id", err)
	b.setHook(nil)
	if _, err := a.out.DeviceKeys(ctx, bob); err != nil {
		t.Errorf("untampered again: %v", err)
	}
}

func TestRemoteKeysStale(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true,
		serviceNow: func() time.Time { return time.Now().Add(-10 * time.Minute) }})
	b.addUser("bob")
	_, err := a.out.DeviceKeys(t.Context(), valise.UserID{Localpart: "bob", Node: nodeB})
	if valise.KindOf(err) != valise.KindUnavailable {
		t.Errorf("answer issued 10 minutes ago: %v, want Unavailable", err)
	}
}

func TestChangedSigningKeyRefused(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	ctx := t.Context()
	other, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// a pinned another key under b's key id: b's answers do not verify.
	fake := storage.SigningKey{KeyID: b.signer.KeyID(), PublicKey: other, ValidFrom: keyValidFrom, ValidUntil: keyValidUntil}
	if err := a.store.PinSigningKeys(ctx, nodeB, []storage.SigningKey{fake}); err != nil {
		t.Fatal(err)
	}
	_, err = a.out.DeviceKeys(ctx, bob)
	if valise.KindOf(err) != valise.KindUnavailable {
		t.Errorf("answer under a changed key: %v, want Unavailable", err)
	}
	pinned, err := a.store.PinnedSigningKeys(ctx, nodeB)
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned) != 1 || !bytes.Equal(pinned[0].PublicKey, other) {
		t.Errorf("pinned = %+v, want the first pin kept", pinned)
	}
}

// TestSigningKeyConflictAlarm has b announce, beside its real key, another
// key under an id a has pinned: a keeps its pin, pins nothing, and
// refuses the answer.
func TestSigningKeyConflictAlarm(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	ctx := t.Context()
	p1, _, _ := ed25519.GenerateKey(rand.Reader)
	p2, _, _ := ed25519.GenerateKey(rand.Reader)
	old := storage.SigningKey{KeyID: "ed25519:old", PublicKey: p1, ValidFrom: keyValidFrom, ValidUntil: keyValidUntil}
	if err := a.store.PinSigningKeys(ctx, nodeB, []storage.SigningKey{old}); err != nil {
		t.Fatal(err)
	}
	b.setHook(tamper(func(resp any) any {
		if r, ok := resp.(*federationv1.GetSigningKeysResponse); ok {
			r.SigningKeys = append(r.SigningKeys, &federationv1.SigningKey{
				KeyId: "ed25519:old", PublicKey: p2, ValidFrom: r.SigningKeys[0].ValidFrom, ValidUntil: r.SigningKeys[0].ValidUntil,
			})
		}
		return resp
	}))
	_, err := a.out.DeviceKeys(ctx, bob)
	if valise.KindOf(err) != valise.KindUnavailable {
		t.Errorf("answer after a key conflict: %v, want Unavailable", err)
	}
	pinned, err := a.store.PinnedSigningKeys(ctx, nodeB)
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned) != 1 || !bytes.Equal(pinned[0].PublicKey, p1) {
		t.Errorf("pinned = %+v, want only the first pin", pinned)
	}
}

func TestRemoteKeysRateLimited(t *testing.T) {
	a, _ := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true, limits: Limits{KeyQueryRate: rateOf(1, 0.01)}})
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	if _, err := a.out.DeviceKeys(t.Context(), bob); err != nil {
		t.Fatal(err)
	}
	_, err := a.out.DeviceKeys(t.Context(), bob)
	var e *valise.Error
	if !errors.As(err, &e) || e.Kind != valise.KindExhausted || e.RetryAfter <= 0 {
		t.Errorf("second lookup: %v, want Exhausted with a delay", err)
	}
}

func TestSigner(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := NewSigner(key)
	id := s.KeyID()
	if len(id) != len("ed25519:")+16 || id[:8] != "ed25519:" || !validKeyID(id) {
		t.Errorf("key id %q", id)
	}
	sig := s.Sign(contextDeviceKeys, []byte("payload"))
	if !verify(pub, contextDeviceKeys, []byte("payload"), sig) {
		t.Error("signature does not verify")
	}
	for name, ok := range map[string]bool{
		"other context": verify(pub, contextClaimedKey, []byte("payload"), sig),
		"other bytes":   verify(pub, contextDeviceKeys, []byte("payloaD"), sig),
		"short key":     verify(pub[:31], contextDeviceKeys, []byte("payload"), sig),
		"short sig":     verify(pub, contextDeviceKeys, []byte("payload"), sig[:63]),
		// The zero byte separates context and bytes.
		"shifted": verify(pub, contextDeviceKeys+"\x00p", []byte("ayload"), sig),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}
	keys := s.Keys()
	if len(keys) != 1 || keys[0].KeyID != id || !bytes.Equal(keys[0].PublicKey, pub) || !keys[0].ValidFrom.Before(keys[0].ValidUntil) {
		t.Errorf("Keys() = %+v", keys)
	}
}

func TestValidUUIDv7(t *testing.T) {
	for i := range 100 {
		if id := valise.NewEnvelopeID(time.Now().Add(time.Duration(i) * time.Hour)); !validUUIDv7(string(id)) {
			t.Errorf("%s refused", id)
		}
	}
	for _, s := range []string{"", "0190a3c4-5b6d-4e8f-9a0b-1c2d3e4f5a6b", "0190a3c4-5b6d-7e8f-ca0b-1c2d3e4f5a6b",
		"0190A3C4-5B6D-7E8F-9A0B-1C2D3E4F5A6B", "0190a3c4x5b6d-7e8f-9a0b-1c2d3e4f5a6b", "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6"} {
		if validUUIDv7(s) {
			t.Errorf("%q accepted", s)
		}
	}
}
