package e2ee_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/valise-im/valise/client/e2ee"
)

var update = flag.Bool("update", false, "rewrite testdata/v1.json and the FuzzOpen seeds (envelopes are sealed afresh)")

const katFile = "testdata/v1.json"

// The fixed inputs of the known-answer vectors. FuzzOpen uses them too.
var (
	katSender    = e2ee.Address{User: "alice@ministry-a.example", Device: "DVALICE1"}
	katRecipient = e2ee.Address{User: "bob@ministry-b.example", Device: "DVBOB1"}
)

func katSeed(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// katPreKeys are the recipient's prekeys: kind, id and the ikm byte.
var katPreKeys = []struct {
	kind e2ee.PreKeyKind
	id   uint32
	ikm  byte
}{
	{e2ee.Signed, 7, 0x03},
	{e2ee.OneTime, 1000, 0x04},
}

type katFileV1 struct {
	Comment      string           `json:"comment"`
	Sender       katDevice        `json:"sender"`
	Recipient    katDevice        `json:"recipient"`
	PreKeys      []katPreKey      `json:"prekeys"`
	Envelopes    []katEnvelope    `json:"envelopes"`
	Fingerprints []katFingerprint `json:"fingerprints"`
}

type katDevice struct {
	User           string `json:"user"`
	Device         string `json:"device"`
	IdentitySeed   string `json:"identity_seed"`
	IdentityPublic string `json:"identity_public"`
}

type katPreKey struct {
	Kind         e2ee.PreKeyKind `json:"kind"`
	ID           uint32          `json:"id"`
	IKM          string          `json:"ikm"`
	PublicSHA256 string          `json:"public_sha256"`
	Signature    string          `json:"signature"`
}

type katEnvelope struct {
	Kind     e2ee.PreKeyKind `json:"kind"`
	KeyID    uint32          `json:"key_id"`
	Envelope string          `json:"envelope"`
	ID       string          `json:"message_id"`
	TimeMS   int64           `json:"time_ms"`
	Body     string          `json:"body"`
}

type katFingerprint struct {
	User        string            `json:"user"`
	Identities  map[string]string `json:"identities"`
	Fingerprint string            `json:"fingerprint"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// katKeys derives the vectors' keys and the recipient's store.
func katKeys(t testing.TB) (sender, recipient *e2ee.IdentityKey, prekeys []*e2ee.PreKey, keys *store) {
	t.Helper()
	sender, err := e2ee.IdentityKeyFromSeed(katSeed(0x01))
	if err != nil {
		t.Fatal(err)
	}
	recipient, err = e2ee.IdentityKeyFromSeed(katSeed(0x02))
	if err != nil {
		t.Fatal(err)
	}
	keys = newStore()
	keys.trust(katSender, sender.Public())
	for _, p := range katPreKeys {
		pk, err := e2ee.DerivePreKey(katSeed(p.ikm), recipient, p.kind, p.id)
		if err != nil {
			t.Fatal(err)
		}
		prekeys = append(prekeys, pk)
		keys.addPreKey(pk)
	}
	return sender, recipient, prekeys, keys
}

// katMessages are the sealed messages, one per prekey.
func katMessages() []e2ee.Message {
	var id1, id2 [16]byte
	for i := range id1 {
		id1[i], id2[i] = byte(i), byte(0xF0+i)
	}
	return []e2ee.Message{
		{ID: id1, Sender: katSender, Recipient: katRecipient, Time: time.UnixMilli(1795575845678), Body: []byte("Hello, Bob. Ciao, Bob. Привет, Боб.")},
		{ID: id2, Sender: katSender, Recipient: katRecipient, Time: time.UnixMilli(1795575900001), Body: bytes.Repeat([]byte("0123456789"), 30)},
	}
}

// katFingerprintSets are the identity sets of the fingerprint vectors:
// device id to identity seed byte.
var katFingerprintSets = []struct {
	user    string
	devices map[string]byte
}{
	{"bob@ministry-b.example", map[string]byte{"DVBOB1": 0x02}},
	{"alice@ministry-a.example", map[string]byte{"DVALICE1": 0x01, "DVALICE2": 0x05, "DVALICE0": 0x06}},
	{"carol@ministry-c.example", map[string]byte{}},
}

func writeKAT(t *testing.T) {
	sender, recipient, prekeys, _ := katKeys(t)
	v := katFileV1{
		Comment:   "Valise e2ee v1 known-answer vectors; regenerate with go test ./client/e2ee -run TestKnownAnswers -update",
		Sender:    katDevice{katSender.User, katSender.Device, hex.EncodeToString(katSeed(0x01)), hex.EncodeToString(sender.Public())},
		Recipient: katDevice{katRecipient.User, katRecipient.Device, hex.EncodeToString(katSeed(0x02)), hex.EncodeToString(recipient.Public())},
	}
	for i, p := range katPreKeys {
		sum := sha256.Sum256(prekeys[i].Public)
		v.PreKeys = append(v.PreKeys, katPreKey{p.kind, p.id, hex.EncodeToString(katSeed(p.ikm)), hex.EncodeToString(sum[:]), hex.EncodeToString(prekeys[i].Signature)})
	}
	seeds := map[string][]byte{
		"empty":       {},
		"header-only": {1, 2, 0, 0, 0, 7, 0x04, 0x60},
		"version-2":   {2, 2, 0, 0, 0, 7, 0x04, 0x60},
	}
	for i, m := range katMessages() {
		env, err := e2ee.Seal(sender, m, e2ee.RecipientKey{Kind: prekeys[i].Kind, ID: prekeys[i].ID, Public: prekeys[i].Public})
		if err != nil {
			t.Fatal(err)
		}
		v.Envelopes = append(v.Envelopes, katEnvelope{prekeys[i].Kind, prekeys[i].ID, hex.EncodeToString(env), hex.EncodeToString(m.ID[:]), m.Time.UnixMilli(), string(m.Body)})
		seeds["kat-"+strconv.Itoa(i)] = env
	}
	for _, set := range katFingerprintSets {
		f := katFingerprint{User: set.user, Identities: map[string]string{}}
		ids := map[string][]byte{}
		for d, b := range set.devices {
			k, err := e2ee.IdentityKeyFromSeed(katSeed(b))
			if err != nil {
				t.Fatal(err)
			}
			ids[d] = k.Public()
			f.Identities[d] = hex.EncodeToString(k.Public())
		}
		f.Fingerprint = e2ee.Fingerprint(set.user, ids)
		v.Fingerprints = append(v.Fingerprints, f)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(katFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(katFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, seed := range seeds {
		corpus := "go test fuzz v1\n[]byte(" + strconv.Quote(string(seed)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(corpus), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKnownAnswers re-derives the keys of testdata/v1.json from their
// seeds, opens its recorded envelopes and recomputes its fingerprints.
func TestKnownAnswers(t *testing.T) {
	if *update {
		writeKAT(t)
	}
	raw, err := os.ReadFile(katFile)
	if err != nil {
		t.Fatal(err)
	}
	var v katFileV1
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	sender, recipient, prekeys, keys := katKeys(t)

	for _, c := range []struct {
		name string
		dev  katDevice
		addr e2ee.Address
		seed byte
		key  *e2ee.IdentityKey
	}{
		{"sender", v.Sender, katSender, 0x01, sender},
		{"recipient", v.Recipient, katRecipient, 0x02, recipient},
	} {
		if c.dev.User != c.addr.User || c.dev.Device != c.addr.Device || !bytes.Equal(unhex(t, c.dev.IdentitySeed), katSeed(c.seed)) {
			t.Errorf("%s: vector inputs %+v differ from the test's", c.name, c.dev)
		}
		if got := hex.EncodeToString(c.key.Public()); got != c.dev.IdentityPublic {
			t.Errorf("%s identity public = %s, want %s", c.name, got, c.dev.IdentityPublic)
		}
	}

	if len(v.PreKeys) != len(katPreKeys) {
		t.Fatalf("%d prekey vectors, want %d", len(v.PreKeys), len(katPreKeys))
	}
	for i, want := range v.PreKeys {
		pk := prekeys[i]
		if want.Kind != pk.Kind || want.ID != pk.ID || !bytes.Equal(unhex(t, want.IKM), katSeed(katPreKeys[i].ikm)) {
			t.Errorf("prekey %d: vector inputs %+v differ from the test's", i, want)
		}
		sum := sha256.Sum256(pk.Public)
		if got := hex.EncodeToString(sum[:]); got != want.PublicSHA256 {
			t.Errorf("prekey %d: SHA-256(public) = %s, want %s", pk.ID, got, want.PublicSHA256)
		}
		if got := hex.EncodeToString(pk.Signature); got != want.Signature {
			t.Errorf("prekey %d: signature = %s, want %s", pk.ID, got, want.Signature)
		}
		if err := e2ee.VerifyPreKey(unhex(t, v.Recipient.IdentityPublic), want.Kind, want.ID, pk.Public, unhex(t, want.Signature)); err != nil {
			t.Errorf("prekey %d: recorded signature: %v", pk.ID, err)
		}
	}

	if len(v.Envelopes) != len(katMessages()) {
		t.Fatalf("%d envelope vectors, want %d", len(v.Envelopes), len(katMessages()))
	}
	for i, e := range v.Envelopes {
		env := unhex(t, e.Envelope)
		h, err := e2ee.ParseHeader(env)
		if err != nil {
			t.Fatalf("envelope %d: ParseHeader: %v", i, err)
		}
		if want := (e2ee.Header{Version: 1, Kind: e.Kind, KeyID: e.KeyID}); h != want {
			t.Errorf("envelope %d: header %+v, want %+v", i, h, want)
		}
		got, err := e2ee.Open(env, katRecipient, katSender, keys)
		if err != nil {
			t.Fatalf("envelope %d: Open: %v", i, err)
		}
		if hex.EncodeToString(got.ID[:]) != e.ID || got.Time.UnixMilli() != e.TimeMS || string(got.Body) != e.Body ||
			got.Sender != katSender || got.Recipient != katRecipient || got.Time.Location() != time.UTC {
			t.Errorf("envelope %d opened as %+v (body %q), want id %s, time %d, body %q", i, got, got.Body, e.ID, e.TimeMS, e.Body)
		}
		want := katMessages()[i]
		if got.ID != want.ID || !got.Time.Equal(want.Time) || !bytes.Equal(got.Body, want.Body) {
			t.Errorf("envelope %d: the vector's message differs from the test's", i)
		}
	}

	if len(v.Fingerprints) != len(katFingerprintSets) {
		t.Fatalf("%d fingerprint vectors, want %d", len(v.Fingerprints), len(katFingerprintSets))
	}
	for i, f := range v.Fingerprints {
		set := katFingerprintSets[i]
		ids := map[string][]byte{}
		for d, k := range f.Identities {
			ids[d] = unhex(t, k)
		}
		if f.User != set.user || len(ids) != len(set.devices) {
			t.Errorf("fingerprint %d: vector inputs differ from the test's", i)
		}
		for _, d := range slices.Sorted(maps.Keys(set.devices)) {
			k, err := e2ee.IdentityKeyFromSeed(katSeed(set.devices[d]))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ids[d], k.Public()) {
				t.Errorf("fingerprint %d: device %s: vector key differs from the test's", i, d)
			}
		}
		if got := e2ee.Fingerprint(f.User, ids); got != f.Fingerprint {
			t.Errorf("Fingerprint(%s) = %q, want %q", f.User, got, f.Fingerprint)
		}
	}
}
