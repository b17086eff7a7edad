package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

func TestLoginPublishesKeysAndRefusesTwice(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	if alice.User() != "alice@localhost" || alice.DeviceID() == "" {
		t.Fatalf("user %q device %q", alice.User(), alice.DeviceID())
	}
	if got := n.otkCount(alice.DeviceID()); got != DefaultOneTimeKeyTarget {
		t.Errorf("one-time keys on the node = %d, want %d", got, DefaultOneTimeKeyTarget)
	}
	st, sec := loadState(t, alice)
	if cur := sec.current(); cur == nil || !cur.Published {
		t.Errorf("signed prekey not published: %+v", cur)
	}
	if len(sec.OneTimeKeys) != DefaultOneTimeKeyTarget || st.Server != n.addr || st.CAPEM == "" {
		t.Errorf("state: %d one-time keys, server %q", len(sec.OneTimeKeys), st.Server)
	}
	dir := alice.cfg.StateDir
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("state dir mode = %o", got)
	}
	for _, f := range []string{stateFile, secretsFile} {
		if got := fileMode(t, filepath.Join(dir, f)); got != 0o600 {
			t.Errorf("%s mode = %o", f, got)
		}
	}
	cfg := alice.cfg
	if _, err := Login(t.Context(), cfg, "alice@localhost", "pw-alice", "again"); !errors.Is(err, ErrLoggedIn) {
		t.Errorf("second login: err = %v, want ErrLoggedIn", err)
	}
	if _, err := Login(t.Context(), testConfig(t, n), "alice@localhost", "wrong", "x"); err == nil {
		t.Error("wrong password accepted")
	}
}

func TestSendReceiveAcrossDevices(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	n.addUser("alice", "pw-alice")
	cfg2 := testConfig(t, n)
	alice2, err := Login(t.Context(), cfg2, "alice@localhost", "pw-alice", "second")
	if err != nil {
		t.Fatal(err)
	}
	defer alice2.Close()

	res, err := alice.Send(t.Context(), "bob@localhost", []byte("hello bob"), SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.EnvelopeIDs) != 2 || len(res.Devices) != 2 || len(res.MessageID) != 32 || res.IdempotencyKey == "" {
		t.Errorf("result = %+v, want 2 envelopes (bob, alice's other device)", res)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings on first contact: %v", res.Warnings)
	}
	_, bobSecBefore := loadState(t, bob)

	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 1 || len(warns) != 0 {
		t.Fatalf("bob got %d messages, warnings %v", len(msgs), warns)
	}
	m := msgs[0]
	if string(m.Body) != "hello bob" || m.From != "alice@localhost" || m.FromDevice != alice.DeviceID() || m.To != "bob@localhost" || m.ID != res.MessageID {
		t.Errorf("bob's message = %+v", m)
	}
	if n.inboxLen(bob.DeviceID()) != 0 {
		t.Error("bob's inbox not acknowledged")
	}
	bobSt, bobSec := loadState(t, bob)
	if len(bobSec.OneTimeKeys) != len(bobSecBefore.OneTimeKeys)-1 {
		t.Errorf("bob's one-time keys %d → %d, want one used and deleted", len(bobSecBefore.OneTimeKeys), len(bobSec.OneTimeKeys))
	}
	if bobSt.Cursor == 0 || bobSt.Acked != bobSt.Cursor {
		t.Errorf("bob's cursor %d acked %d", bobSt.Cursor, bobSt.Acked)
	}
	if bobSt.Pins["alice@localhost"][alice.DeviceID()] == nil {
		t.Error("bob did not pin alice's device on first use")
	}

	copies, _ := receiveAll(t, alice2)
	if len(copies) != 1 || copies[0].To != "bob@localhost" || copies[0].From != "alice@localhost" {
		t.Fatalf("alice's other device got %+v", copies)
	}
	for who, c := range map[string]*Client{"alice": alice, "alice2": alice2} {
		h, err := c.History("bob@localhost")
		if err != nil || len(h) != 1 || string(h[0].Body) != "hello bob" {
			t.Errorf("%s's history with bob = %+v, %v", who, h, err)
		}
	}
	if h, _ := bob.History("alice"); len(h) != 1 {
		t.Errorf("bob's history with alice = %+v", h)
	}
	// Nothing more: a second receive finds nothing.
	if msgs, _ := receiveAll(t, bob); len(msgs) != 0 {
		t.Errorf("second receive got %d messages", len(msgs))
	}
	// Bob answers, then Alice opens it with the pin she has.
	if _, err := bob.Send(t.Context(), "alice", []byte("hi alice"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if msgs, warns := receiveAll(t, alice); len(msgs) != 1 || string(msgs[0].Body) != "hi alice" || len(warns) != 0 {
		t.Errorf("alice got %+v, %v", msgs, warns)
	}
}

func TestSendRetryIsIdempotent(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	n.mu.Lock()
	n.failSendOnce = true
	n.mu.Unlock()
	res, err := alice.Send(t.Context(), "bob@localhost", []byte("once"), SendOptions{IdempotencyKey: "k1"})
	if err != nil {
		t.Fatalf("send after a lost answer: %v", err)
	}
	n.mu.Lock()
	calls := n.sendCalls
	n.mu.Unlock()
	if calls != 2 || res.IdempotencyKey != "k1" {
		t.Errorf("SendEnvelopes calls = %d (want 2), key %q", calls, res.IdempotencyKey)
	}
	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 1 || len(warns) != 0 {
		t.Errorf("bob got %d messages (want exactly 1), warnings %v", len(msgs), warns)
	}
}

func TestReplayAndPoisonAreDroppedAndAcked(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	// Seal to the signed prekey (claims exhausted) so that a replayed
	// envelope still decrypts and the message id catches it.
	n.mu.Lock()
	n.exhaustClaims = true
	n.mu.Unlock()
	if _, err := alice.Send(t.Context(), "bob", []byte("one"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	orig := n.byID[bob.DeviceID()].inbox[0]
	n.mu.Unlock()
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "replay", SenderUser: orig.SenderUser, SenderDeviceId: orig.SenderDeviceId, ServerTime: timestamppb.Now(), Ciphertext: orig.Ciphertext})
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "poison", SenderUser: "alice@localhost", SenderDeviceId: alice.DeviceID(), ServerTime: timestamppb.Now(), Ciphertext: []byte("garbage")})
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "bad-sender", SenderUser: "NOT A USER", SenderDeviceId: "x", ServerTime: timestamppb.Now(), Ciphertext: orig.Ciphertext})
	if _, err := alice.Send(t.Context(), "bob", []byte("two"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	msgs, warns := receiveAll(t, bob)
	if got := bodies(msgs); got != "one,two" {
		t.Errorf("bob got %q, want one,two", got)
	}
	var kinds []WarningKind
	for _, w := range warns {
		kinds = append(kinds, w.Kind)
	}
	if want := []WarningKind{WarnReplay, WarnRejected, WarnRejected}; !equalSlices(kinds, want) {
		t.Errorf("warnings = %v, want %v (%v)", kinds, want, warns)
	}
	if n.inboxLen(bob.DeviceID()) != 0 {
		t.Error("dropped envelopes were not acknowledged")
	}
	if h, _ := bob.History(""); len(h) != 2 {
		t.Errorf("history has %d messages, want 2", len(h))
	}
}

func bodies(ms []Message) string {
	var b []string
	for _, m := range ms {
		b = append(b, string(m.Body))
	}
	return strings.Join(b, ",")
}

// replaceKeys makes the node serve new keys for a device, as a malicious
// node or a reinstalled device would.
func replaceKeys(t *testing.T, n *fakeNode, device string) {
	t.Helper()
	id, err := e2ee.NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	spk, err := e2ee.NewPreKey(id, e2ee.Signed, 999)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.byID[device]
	d.identity = id.Public()
	d.signed = &clientv1.PreKey{KeyId: 999, PublicKey: spk.Public, Signature: spk.Signature}
	d.otks = nil
}

func TestChangedKeyRefusedUnlessAccepted(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("pin"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	replaceKeys(t, n, bob.DeviceID())
	_, err := alice.Send(t.Context(), "bob", []byte("secret"), SendOptions{})
	var ce *ChangedKeysError
	if !errors.As(err, &ce) || !errors.Is(err, ErrIdentityChanged) || ce.Devices[0] != bob.DeviceID() || !strings.Contains(err.Error(), bob.DeviceID()) {
		t.Fatalf("send to a changed key: err = %v, want a ChangedKeysError naming %s", err, bob.DeviceID())
	}
	devs, err := alice.Devices(t.Context(), "bob")
	if err != nil || len(devs) != 1 || devs[0].Trust != TrustChanged {
		t.Errorf("devices = %+v, %v; want one CHANGED", devs, err)
	}
	res, err := alice.Send(t.Context(), "bob", []byte("accepted"), SendOptions{AcceptChangedKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Kind != WarnChangedKey {
		t.Errorf("warnings = %v, want one WarnChangedKey", res.Warnings)
	}
	if _, err := alice.Send(t.Context(), "bob", []byte("again"), SendOptions{}); err != nil {
		t.Errorf("after accepting, send fails: %v", err)
	}
}

func TestBadPreKeySignatureSkipsDevice(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	n.mu.Lock()
	d := n.byID[bob.DeviceID()]
	sig := append([]byte(nil), d.signed.Signature...)
	sig[0] ^= 1
	d.signed = &clientv1.PreKey{KeyId: d.signed.KeyId, PublicKey: d.signed.PublicKey, Signature: sig}
	n.mu.Unlock()
	res, err := alice.Send(t.Context(), "bob", []byte("x"), SendOptions{})
	if err == nil {
		t.Fatal("send to a device with a forged prekey succeeded")
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Kind != WarnBadKeys {
		t.Errorf("warnings = %v, want WarnBadKeys", res.Warnings)
	}
}

func TestVerifyAndNewDeviceWarning(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	fp, err := alice.Fingerprint(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if fp2, _ := bob.Fingerprint(t.Context(), "bob@localhost"); fp2 != fp {
		t.Errorf("alice sees %q, bob %q: safety numbers differ", fp, fp2)
	}
	if err := alice.Verify(t.Context(), "bob", "00000 "+fp[6:]); !errors.Is(err, ErrFingerprintMismatch) {
		t.Errorf("wrong fingerprint: err = %v", err)
	}
	if err := alice.Verify(t.Context(), "bob", strings.ReplaceAll(fp, " ", "\n")); err != nil {
		t.Fatalf("verify: %v", err)
	}
	devs, _ := alice.Devices(t.Context(), "bob")
	if len(devs) != 1 || devs[0].Trust != TrustVerified {
		t.Errorf("devices after verify = %+v", devs)
	}
	// Bob adds a device: Alice is warned loudly on her next send.
	n.addUser("bob", "pw-bob")
	bob2, err := Login(t.Context(), testConfig(t, n), "bob@localhost", "pw-bob", "bob's tablet")
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	res, err := alice.Send(t.Context(), "bob", []byte("hi"), SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0].Kind != WarnNewDevice || res.Warnings[0].Device != bob2.DeviceID() {
		t.Errorf("warnings = %v, want WarnNewDevice for %s", res.Warnings, bob2.DeviceID())
	}
	if len(res.EnvelopeIDs) != 2 {
		t.Errorf("sent %d envelopes, want 2 (both of bob's devices)", len(res.EnvelopeIDs))
	}
	own, err := bob.Devices(t.Context(), "")
	if err != nil || len(own) != 2 {
		t.Fatalf("bob's devices = %+v, %v", own, err)
	}
	for _, d := range own {
		if d.Current != (d.ID == bob.DeviceID()) || d.Name == "" || !d.HasKeys {
			t.Errorf("own device %+v", d)
		}
	}
}

func TestReceiveRejectsChangedSenderKey(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("first"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, bob) // pins alice's device
	// An impostor with another identity key seals "from" alice's device,
	// and the node now shows the impostor's key.
	evil, _ := e2ee.NewIdentityKey()
	n.mu.Lock()
	bd := n.byID[bob.DeviceID()]
	n.identityChange[alice.DeviceID()] = evil.Public()
	n.mu.Unlock()
	payload, _ := encodePayload("bob@localhost", []byte("send me your password"))
	ct, err := e2ee.Seal(evil, e2ee.Message{
		Sender:    e2ee.Address{User: "alice@localhost", Device: alice.DeviceID()},
		Recipient: e2ee.Address{User: "bob@localhost", Device: bob.DeviceID()},
		Time:      time.Now(), Body: payload,
	}, e2ee.RecipientKey{Kind: e2ee.Signed, ID: bd.signed.KeyId, Public: bd.signed.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "evil", SenderUser: "alice@localhost", SenderDeviceId: alice.DeviceID(), ServerTime: timestamppb.Now(), Ciphertext: ct})
	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 0 {
		t.Errorf("bob accepted %q", bodies(msgs))
	}
	if len(warns) != 2 || warns[0].Kind != WarnChangedKey || warns[1].Kind != WarnRejected || !errors.Is(warns[1].Err, ErrIdentityChanged) {
		t.Errorf("warnings = %v, want WarnChangedKey then WarnRejected", warns)
	}
}

func TestSignedPreKeyRotationAndGrace(t *testing.T) {
	n := startFakeNode(t)
	clock := newFakeClock()
	alice := login(t, n, "alice", func(c *Config) { c.Now = clock.Now })
	_, sec := loadState(t, alice)
	first := sec.current().ID
	keys := &openKeys{c: alice, ctx: t.Context()}

	clock.Advance(6 * 24 * time.Hour)
	if err := alice.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, sec = loadState(t, alice); sec.current().ID != first {
		t.Fatal("rotated before a week")
	}
	clock.Advance(2 * 24 * time.Hour)
	if err := alice.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, sec = loadState(t, alice)
	second := sec.current()
	if second.ID == first || !second.Published || len(sec.SignedPreKeys) != 2 {
		t.Fatalf("after a week: current %d (first %d), %d signed prekeys", second.ID, first, len(sec.SignedPreKeys))
	}
	n.mu.Lock()
	served := n.byID[alice.DeviceID()].signed.KeyId
	n.mu.Unlock()
	if served != second.ID {
		t.Errorf("node serves signed prekey %d, want %d", served, second.ID)
	}
	if _, err := keys.PreKey(e2ee.Signed, first); err != nil {
		t.Errorf("old signed prekey within grace: %v", err)
	}
	clock.Advance(15 * 24 * time.Hour)
	_, err := keys.PreKey(e2ee.Signed, first)
	if !errors.Is(err, e2ee.ErrUnknownPreKey) || !strings.Contains(err.Error(), "grace") {
		t.Errorf("old signed prekey past grace: err = %v", err)
	}
	if err := alice.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, sec = loadState(t, alice); len(sec.SignedPreKeys) != 2 {
		// The second one was rotated too (15 days > 7); the first is gone.
		t.Errorf("%d signed prekeys kept, want 2 (current and the one just replaced)", len(sec.SignedPreKeys))
	}
	for _, k := range sec.SignedPreKeys {
		if k.ID == first {
			t.Error("signed prekey past grace not forgotten")
		}
	}
}

func TestOneTimeKeysTopUpAndDeletion(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	keys := &openKeys{c: alice, ctx: t.Context()}
	_, sec := loadState(t, alice)
	var some uint32
	for id := range sec.OneTimeKeys {
		some = id
		break
	}
	if _, err := keys.PreKey(e2ee.OneTime, some); err != nil {
		t.Fatal(err)
	}
	// Senders claim 60: the stock falls under half, Maintain tops it up.
	n.mu.Lock()
	n.byID[alice.DeviceID()].otks = n.byID[alice.DeviceID()].otks[60:]
	n.mu.Unlock()
	if err := alice.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := n.otkCount(alice.DeviceID()); got != DefaultOneTimeKeyTarget {
		t.Errorf("stock after top-up = %d, want %d", got, DefaultOneTimeKeyTarget)
	}
	// 10 more claimed: 90 is above half, nothing published.
	n.mu.Lock()
	n.byID[alice.DeviceID()].otks = n.byID[alice.DeviceID()].otks[10:]
	n.mu.Unlock()
	if err := alice.Maintain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := n.otkCount(alice.DeviceID()); got != 90 {
		t.Errorf("stock = %d, want 90 (no top-up above half)", got)
	}
	if _, err := keys.PreKey(e2ee.OneTime, 1<<30); !errors.Is(err, e2ee.ErrUnknownPreKey) {
		t.Errorf("unknown one-time key: err = %v", err)
	}
}

func TestPassphraseLoginAndOpen(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", func(c *Config) { c.Passphrase = []byte("correct horse") })
	dir := alice.cfg.StateDir
	_, sec := loadState(t, alice)
	file, err := os.ReadFile(filepath.Join(dir, sealedFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(file), sec.AccessToken) || strings.Contains(string(file), string(sec.IdentitySeed)) {
		t.Error("sealed secrets contain the token or seed")
	}
	if _, err := os.Stat(filepath.Join(dir, secretsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("secrets.json written despite a passphrase")
	}
	alice.Close()
	cfg := Config{StateDir: dir, KDF: fastKDF}
	if _, err := Open(t.Context(), cfg); !errors.Is(err, ErrNeedPassphrase) {
		t.Errorf("open without passphrase: %v", err)
	}
	cfg.Passphrase = []byte("wrong horse")
	if _, err := Open(t.Context(), cfg); !errors.Is(err, ErrPassphrase) {
		t.Errorf("open with a wrong passphrase: %v", err)
	}
	cfg.Passphrase = []byte("correct horse")
	c, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open with the passphrase (server and CA from the state): %v", err)
	}
	defer c.Close()
	if c.DeviceID() != alice.DeviceID() {
		t.Errorf("device %s, want %s", c.DeviceID(), alice.DeviceID())
	}
}

func TestLogoutWipesAndAllowsNewLogin(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("x"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := alice.cfg.StateDir
	if err := alice.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	revoked := n.byID[alice.DeviceID()].revoked
	n.mu.Unlock()
	if !revoked {
		t.Error("device not revoked on the node")
	}
	if _, err := os.Stat(filepath.Join(dir, secretsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("secrets survived logout")
	}
	alice.Close()
	if _, err := Open(t.Context(), Config{StateDir: dir}); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("open after logout: %v", err)
	}
	cfg := testConfig(t, n)
	cfg.StateDir = dir
	if _, err := Login(t.Context(), cfg, "bob@localhost", "pw-bob", "x"); err == nil || !strings.Contains(err.Error(), "belongs to alice") {
		t.Errorf("login as another user in alice's directory: %v", err)
	}
	again, err := Login(t.Context(), cfg, "alice@localhost", "pw-alice", "again")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	st, _ := loadState(t, again)
	if st.Pins["bob@localhost"][bob.DeviceID()] == nil {
		t.Error("pins lost across logout and login")
	}
	if h, _ := again.History("bob"); len(h) != 1 {
		t.Errorf("history lost across logout: %d", len(h))
	}
}

func TestReceiveFollowAndExclusive(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan Message, 1)
	done := make(chan error, 1)
	go func() {
		done <- bob.Receive(ctx, ReceiveOptions{Follow: true}, func(m Message) error { got <- m; return nil })
	}()
	// Wait until the follower streams: it holds the receive lock.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n.mu.Lock()
		streams := n.streams
		n.mu.Unlock()
		if streams == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower does not stream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := bob.Receive(t.Context(), ReceiveOptions{Idle: 10 * time.Millisecond}, func(Message) error { return nil })
	if !errors.Is(err, ErrReceiving) {
		t.Fatalf("second receive: err = %v, want ErrReceiving", err)
	}
	if _, err := alice.Send(t.Context(), "bob", []byte("live"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Body) != "live" {
			t.Errorf("got %q", m.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not receive")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("follow ended with %v, want context.Canceled", err)
	}
}

func TestReceiveHandlerErrorStops(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	for _, s := range []string{"a", "b"} {
		if _, err := alice.Send(t.Context(), "bob", []byte(s), SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	err := bob.Receive(t.Context(), ReceiveOptions{Idle: time.Second}, func(Message) error { return stop })
	if err != stop {
		t.Errorf("err = %v, want the handler's error as is", err)
	}
	// The first message is stored and acknowledged. The second comes next
	// unless it arrived in the same batch, stored together before the
	// handler saw the first: then it stays in the history only.
	msgs, _ := receiveAll(t, bob)
	if got := bodies(msgs); got != "b" && got != "" {
		t.Errorf("then got %q, want b or nothing", got)
	}
	if h, _ := bob.History(""); bodies(h) != "a,b" {
		t.Errorf("history = %q", bodies(h))
	}
}

func TestSendErrors(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	if _, err := alice.Send(t.Context(), "nobody", []byte("x"), SendOptions{}); err == nil || !strings.Contains(err.Error(), "no device") {
		t.Errorf("send to a user without devices: %v", err)
	}
	if _, err := alice.Send(t.Context(), "alice", []byte("x"), SendOptions{}); err == nil || !strings.Contains(err.Error(), "no other device") {
		t.Errorf("send to self without other devices: %v", err)
	}
	if _, err := alice.Send(t.Context(), "Bad User", []byte("x"), SendOptions{}); err == nil {
		t.Error("bad user accepted")
	}
	if _, err := alice.Send(t.Context(), "bob", make([]byte, e2ee.MaxBody), SendOptions{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over-long message: %v", err)
	}
}

func TestOpenRevokedDeviceThenLogout(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	dir := alice.cfg.StateDir
	alice.Close()
	n.mu.Lock()
	n.byID[alice.DeviceID()].revoked = true // revoked by an admin
	n.mu.Unlock()
	if _, err := Open(t.Context(), Config{StateDir: dir}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("open a revoked device: err = %v, want ErrRevoked", err)
	}
	c, err := Open(t.Context(), Config{StateDir: dir, SkipMaintain: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Logout(t.Context()); err != nil {
		t.Errorf("logout of a revoked device: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, secretsFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("secrets survived")
	}
}
