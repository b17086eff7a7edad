package e2ee_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/valise-im/valise/client/e2ee"
)

// errNoIdentity is what the fake store returns for a sender it does not know.
var errNoIdentity = errors.New("fake store: unknown sender")

type keyRef struct {
	kind e2ee.PreKeyKind
	id   uint32
}

// store is an in-memory e2ee.Keys.
type store struct {
	prekeys    map[keyRef][]byte
	identities map[e2ee.Address][]byte
}

func newStore() *store {
	return &store{prekeys: map[keyRef][]byte{}, identities: map[e2ee.Address][]byte{}}
}

func (s *store) addPreKey(p *e2ee.PreKey) { s.prekeys[keyRef{p.Kind, p.ID}] = p.Private }

func (s *store) trust(a e2ee.Address, identityPublic []byte) { s.identities[a] = identityPublic }

func (s *store) PreKey(kind e2ee.PreKeyKind, id uint32) ([]byte, error) {
	k, ok := s.prekeys[keyRef{kind, id}]
	if !ok {
		return nil, fmt.Errorf("fake store: prekey %d/%d: %w", kind, id, e2ee.ErrUnknownPreKey)
	}
	return k, nil
}

func (s *store) IdentityKey(a e2ee.Address) ([]byte, error) {
	k, ok := s.identities[a]
	if !ok {
		return nil, errNoIdentity
	}
	return k, nil
}

// device is one device with its keys and the store it opens envelopes with.
type device struct {
	addr     e2ee.Address
	identity *e2ee.IdentityKey
	oneTime  *e2ee.PreKey
	signed   *e2ee.PreKey
	keys     *store
}

func newDevice(t testing.TB, user, dev string) *device {
	t.Helper()
	id, err := e2ee.NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	otk, err := e2ee.NewPreKey(id, e2ee.OneTime, 1)
	if err != nil {
		t.Fatal(err)
	}
	spk, err := e2ee.NewPreKey(id, e2ee.Signed, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{addr: e2ee.Address{User: user, Device: dev}, identity: id, oneTime: otk, signed: spk, keys: newStore()}
	d.keys.addPreKey(otk)
	d.keys.addPreKey(spk)
	return d
}

// knows makes d trust other's identity key.
func (d *device) knows(other *device) { d.keys.trust(other.addr, other.identity.Public()) }

func recipientKey(p *e2ee.PreKey) e2ee.RecipientKey {
	return e2ee.RecipientKey{Kind: p.Kind, ID: p.ID, Public: p.Public}
}

// pair returns Alice's device and Bob's device, each trusting the other.
func pair(t testing.TB) (alice, bob *device) {
	t.Helper()
	alice = newDevice(t, "alice@a.example", "DVALICE1")
	bob = newDevice(t, "bob@b.example", "DVBOB1")
	alice.knows(bob)
	bob.knows(alice)
	return alice, bob
}

func message(from, to *device, body []byte) e2ee.Message {
	return e2ee.Message{
		ID:        [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Sender:    from.addr,
		Recipient: to.addr,
		Time:      time.Date(2026, 11, 25, 3, 4, 5, 678_901_234, time.UTC),
		Body:      body,
	}
}

func seal(t testing.TB, from *device, m e2ee.Message, to *e2ee.PreKey) []byte {
	t.Helper()
	env, err := e2ee.Seal(from.identity, m, recipientKey(to))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return env
}

// checkMessage compares an opened message with what was sealed.
func checkMessage(t *testing.T, got, sent e2ee.Message) {
	t.Helper()
	if got.ID != sent.ID {
		t.Errorf("ID = %x, want %x", got.ID, sent.ID)
	}
	if got.Sender != sent.Sender {
		t.Errorf("Sender = %v, want %v", got.Sender, sent.Sender)
	}
	if got.Recipient != sent.Recipient {
		t.Errorf("Recipient = %v, want %v", got.Recipient, sent.Recipient)
	}
	if want := sent.Time.Truncate(time.Millisecond).UTC(); !got.Time.Equal(want) || got.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v in UTC", got.Time, want)
	}
	if !bytes.Equal(got.Body, sent.Body) {
		t.Errorf("Body = %d bytes, want %d bytes", len(got.Body), len(sent.Body))
	}
}
