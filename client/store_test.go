package client

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testSecrets() *secrets {
	return &secrets{
		Version:      stateVersion,
		AccessToken:  "TOKEN-sekrit-0123456789abcdef",
		IdentitySeed: bytes.Repeat([]byte{0xA5}, 32),
		NextPreKeyID: 7,
		SignedPreKeys: []*signedPreKey{{
			ID: 1, Private: bytes.Repeat([]byte{0x5A}, 32), Public: []byte("pub"), Signature: []byte("sig"),
			Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Published: true,
		}},
		OneTimeKeys: map[uint32][]byte{2: bytes.Repeat([]byte{0x3C}, 32)},
	}
}

func testState() *state {
	return &state{
		Version: stateVersion, Server: "127.0.0.1:1", ServerName: "localhost", User: "alice@localhost", Device: "DVAAAAAAAAAAAAAAAA",
		Pins: map[string]map[string]*pin{"bob@localhost": {"DVBBBBBBBBBBBBBBBB": {IdentityKey: []byte("k"), FirstSeen: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}},
	}
}

func newTestStore(t *testing.T, passphrase string) (*store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	var pp []byte
	if passphrase != "" {
		pp = []byte(passphrase)
	}
	s, err := openStore(dir, pp, fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s, dir
}

func createTestStore(t *testing.T, passphrase string) (*store, string) {
	t.Helper()
	s, dir := newTestStore(t, passphrase)
	if err := s.create(func(*state) error { return nil }, testState(), testSecrets()); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestStoreRoundTripAndModes(t *testing.T) {
	for _, pp := range []string{"", "correct horse"} {
		t.Run("passphrase="+pp, func(t *testing.T) {
			s, dir := createTestStore(t, pp)
			if got := fileMode(t, dir); got != 0o700 {
				t.Errorf("state directory mode = %o, want 700", got)
			}
			for _, name := range []string{stateFile, lockFile} {
				if got := fileMode(t, filepath.Join(dir, name)); got != 0o600 {
					t.Errorf("%s mode = %o, want 600", name, got)
				}
			}
			secretName, other := secretsFile, sealedFile
			if pp != "" {
				secretName, other = sealedFile, secretsFile
			}
			if got := fileMode(t, filepath.Join(dir, secretName)); got != 0o600 {
				t.Errorf("%s mode = %o, want 600", secretName, got)
			}
			if _, err := os.Stat(filepath.Join(dir, other)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists, want only %s", other, secretName)
			}

			// A second process (another store on the same directory) reads
			// back what was written.
			s2, err := openStore(dir, []byte(pp), fastKDF)
			if pp == "" {
				s2, err = openStore(dir, nil, fastKDF)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s2.close()
			err = s2.view(func(st *state, sec *secrets) error {
				if st.User != "alice@localhost" || st.Device != "DVAAAAAAAAAAAAAAAA" || st.Encrypted != (pp != "") {
					t.Errorf("state = %+v", st)
				}
				if p := st.Pins["bob@localhost"]["DVBBBBBBBBBBBBBBBB"]; p == nil || string(p.IdentityKey) != "k" {
					t.Errorf("pin lost: %+v", st.Pins)
				}
				want := testSecrets()
				if sec.AccessToken != want.AccessToken || !bytes.Equal(sec.IdentitySeed, want.IdentitySeed) || sec.NextPreKeyID != 7 ||
					len(sec.SignedPreKeys) != 1 || !bytes.Equal(sec.OneTimeKeys[2], want.OneTimeKeys[2]) {
					t.Errorf("secrets did not round-trip")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			// An update by one is seen by the other.
			if err := s.update(func(st *state, sec *secrets) error {
				st.Cursor = 42
				delete(sec.OneTimeKeys, 2)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := s2.view(func(st *state, sec *secrets) error {
				if st.Cursor != 42 || len(sec.OneTimeKeys) != 0 {
					t.Errorf("cursor = %d, one-time keys = %d; want 42, 0", st.Cursor, len(sec.OneTimeKeys))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStoreSealedHasNoPlaintext(t *testing.T) {
	_, dir := createTestStore(t, "correct horse")
	sec := testSecrets()
	for _, name := range []string{sealedFile, stateFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for what, needle := range map[string][]byte{
			"seed": sec.IdentitySeed, "token": []byte(sec.AccessToken), "one-time key": sec.OneTimeKeys[2],
			"signed prekey": sec.SignedPreKeys[0].Private, "token (base64-free part)": []byte("sekrit"),
		} {
			if bytes.Contains(b, needle) {
				t.Errorf("%s contains the %s in the clear", name, what)
			}
		}
		if name == sealedFile && (bytes.Contains(b, []byte("access_token")) || bytes.Contains(b, []byte("TOKEN"))) {
			t.Errorf("%s holds readable JSON", name)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == secretsFile || strings.HasPrefix(e.Name(), "."+secretsFile) {
			t.Errorf("unsealed secrets file %s written", e.Name())
		}
	}
}

func TestStorePassphraseErrors(t *testing.T) {
	_, dir := createTestStore(t, "correct horse")
	view := func(pp []byte) error {
		s, err := openStore(dir, pp, fastKDF)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		return s.view(func(*state, *secrets) error { return nil })
	}
	if err := view([]byte("wrong")); !errors.Is(err, ErrPassphrase) {
		t.Errorf("wrong passphrase: err = %v, want ErrPassphrase", err)
	}
	if err := view(nil); !errors.Is(err, ErrNeedPassphrase) {
		t.Errorf("no passphrase: err = %v, want ErrNeedPassphrase", err)
	}
	if err := view([]byte("correct horse")); err != nil {
		t.Errorf("right passphrase: %v", err)
	}

	_, plainDir := createTestStore(t, "")
	s, _ := openStore(plainDir, []byte("unexpected"), fastKDF)
	defer s.close()
	if err := s.view(func(*state, *secrets) error { return nil }); !errors.Is(err, ErrNotSealed) {
		t.Errorf("passphrase on an unsealed state: err = %v, want ErrNotSealed", err)
	}
}

func TestStoreCreateRefusesLoggedIn(t *testing.T) {
	s, _ := createTestStore(t, "")
	err := s.create(func(*state) error { return nil }, testState(), testSecrets())
	if !errors.Is(err, ErrLoggedIn) {
		t.Errorf("second create: err = %v, want ErrLoggedIn", err)
	}
}

func TestStoreWipeKeepsPinsAndHistory(t *testing.T) {
	s, dir := createTestStore(t, "pp")
	if err := appendSync(dir, historyFile, []byte(`{"id":"x"}`+"\n")); err != nil {
		t.Fatal(err)
	}
	if err := appendSync(dir, seenFile, []byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.wipe(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{secretsFile, sealedFile, seenFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the wipe", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, historyFile)); err != nil {
		t.Errorf("history lost: %v", err)
	}
	if err := s.view(func(*state, *secrets) error { return nil }); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("after wipe: err = %v, want ErrNotLoggedIn", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, stateFile))
	st, err := decodeState(raw)
	if err != nil {
		t.Fatal(err)
	}
	if st.Device != "" || st.Encrypted || st.Cursor != 0 || st.Pins["bob@localhost"] == nil || st.User != "alice@localhost" {
		t.Errorf("state after wipe = %+v", st)
	}
	// A new login (without a passphrase this time) may reuse the directory.
	s2, _ := openStore(dir, nil, fastKDF)
	defer s2.close()
	if err := s2.create(func(old *state) error {
		if old == nil || old.Pins["bob@localhost"] == nil {
			t.Errorf("create did not see the old pins")
		}
		return nil
	}, testState(), testSecrets()); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureDirTightens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "loose")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ensureDir(dir); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("mode = %o, want 700", got)
	}
}

func TestWriteFileAtomicLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		if err := writeFileAtomic(dir, "f", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "f" {
		t.Errorf("directory holds %v, want only f", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); !bytes.Equal(b, []byte{2}) {
		t.Errorf("content = %v, want [2]", b)
	}
}

func TestSecretsRedacted(t *testing.T) {
	sec := testSecrets()
	for _, s := range []string{sec.String(), sec.LogValue().String(), Config{Passphrase: []byte("hunter2")}.String(), (&bearer{token: sec.AccessToken}).String()} {
		if strings.Contains(s, "sekrit") || strings.Contains(s, "hunter2") {
			t.Errorf("%q shows a secret", s)
		}
	}
}
