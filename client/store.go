package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Errors about the state directory.
var (
	ErrNotLoggedIn    = errors.New("client: no device is logged in with this state directory (log in first)")
	ErrLoggedIn       = errors.New("client: this state directory already holds a logged-in device (log out first, or use another state directory)")
	ErrNeedPassphrase = errors.New("client: the secrets of this state directory are sealed with a passphrase; give it")
	ErrNotSealed      = errors.New("client: the secrets of this state directory are not sealed, but a passphrase was given")
)

// store is a state directory. Every read-modify-write reloads the files
// under an exclusive advisory lock, so processes sharing the directory do
// not lose each other's changes; mu serializes the goroutines of one
// process, which share the lock's file description.
type store struct {
	dir        string
	passphrase []byte
	kdf        KDFParams
	sealer     *sealer

	mu   sync.Mutex
	lock *os.File
}

// openStore opens (and creates, mode 0700) the state directory dir.
func openStore(dir string, passphrase []byte, kdf KDFParams) (*store, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("client: lock file: %w", err)
	}
	s := &store{dir: dir, kdf: kdf, lock: f}
	if len(passphrase) > 0 {
		s.passphrase = bytes.Clone(passphrase)
	}
	return s, nil
}

// close releases the lock file and forgets the key.
func (s *store) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealer.wipe()
	s.sealer = nil
	clear(s.passphrase)
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// loaded is what load read, with the bytes it came from so that unchanged
// files are not rewritten.
type loaded struct {
	st     *state
	sec    *secrets
	stRaw  []byte
	secRaw []byte
}

// load reads the state and, when a device is logged in, its secrets. st
// is nil when the directory has no state yet.
func (s *store) load() (loaded, error) {
	var l loaded
	raw, err := readFile(s.dir, stateFile)
	if err != nil || raw == nil {
		return l, err
	}
	if l.st, err = decodeState(raw); err != nil {
		return l, err
	}
	l.stRaw = raw
	if l.st.Device == "" {
		return l, nil
	}
	var plain []byte
	if l.st.Encrypted {
		if s.passphrase == nil {
			return l, ErrNeedPassphrase
		}
		file, err := readFile(s.dir, sealedFile)
		if err != nil {
			return l, err
		}
		if file == nil {
			return l, fmt.Errorf("client: %s is missing from %s", sealedFile, s.dir)
		}
		if s.sealer == nil {
			if s.sealer, err = sealerFor(s.passphrase, file); err != nil {
				return l, err
			}
		}
		if plain, err = s.sealer.open(file); err != nil {
			return l, err
		}
	} else {
		if s.passphrase != nil {
			return l, ErrNotSealed
		}
		if plain, err = readFile(s.dir, secretsFile); err != nil {
			return l, err
		}
		if plain == nil {
			return l, fmt.Errorf("client: %s is missing from %s", secretsFile, s.dir)
		}
	}
	if l.sec, err = decodeSecrets(plain); err != nil {
		return l, err
	}
	l.secRaw = plain
	return l, nil
}

// save writes what changed since l was loaded: the secrets first, then
// the state.
func (s *store) save(l loaded) error {
	if l.sec != nil {
		plain, err := json.Marshal(l.sec)
		if err != nil {
			return fmt.Errorf("client: encode secrets: %w", err)
		}
		if !bytes.Equal(plain, l.secRaw) {
			if err := s.writeSecrets(l.st.Encrypted, plain); err != nil {
				return err
			}
		}
		clear(plain)
	}
	raw, err := json.MarshalIndent(l.st, "", "  ")
	if err != nil {
		return fmt.Errorf("client: encode state: %w", err)
	}
	if !bytes.Equal(raw, l.stRaw) {
		return writeFileAtomic(s.dir, stateFile, raw)
	}
	return nil
}

func (s *store) writeSecrets(encrypted bool, plain []byte) error {
	if !encrypted {
		return writeFileAtomic(s.dir, secretsFile, plain)
	}
	if s.sealer == nil {
		return errors.New("client: no key to seal the secrets")
	}
	file, err := s.sealer.seal(plain)
	if err != nil {
		return fmt.Errorf("client: seal secrets: %w", err)
	}
	return writeFileAtomic(s.dir, sealedFile, file)
}

// locked runs fn holding the directory's lock.
func (s *store) locked(exclusive bool, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return errors.New("client: closed")
	}
	unlock, err := flock(s.lock, exclusive)
	if err != nil {
		return fmt.Errorf("client: lock state directory: %w", err)
	}
	defer unlock()
	return fn()
}

// view runs fn on the current state and secrets of the logged-in device.
// fn must not keep or change them.
func (s *store) view(fn func(st *state, sec *secrets) error) error {
	return s.locked(false, func() error {
		l, err := s.load()
		if err != nil {
			return err
		}
		if l.st == nil || l.st.Device == "" {
			return ErrNotLoggedIn
		}
		defer l.sec.wipe()
		return fn(l.st, l.sec)
	})
}

// snapshot loads the state and secrets of the logged-in device for the
// caller to read, and change in memory only; the caller wipes l.sec.
func (s *store) snapshot() (loaded, error) {
	var l loaded
	err := s.locked(false, func() error {
		var err error
		if l, err = s.load(); err != nil {
			return err
		}
		if l.st == nil || l.st.Device == "" {
			l.sec.wipe()
			return ErrNotLoggedIn
		}
		return nil
	})
	return l, err
}

// update runs fn on the current state and secrets of the logged-in device
// and saves what fn changed, unless fn fails. fn may append to the
// history and seen files: it runs under the directory's lock, and its
// appends reach the disk before the state does.
func (s *store) update(fn func(st *state, sec *secrets) error) error {
	return s.locked(true, func() error {
		l, err := s.load()
		if err != nil {
			return err
		}
		if l.st == nil || l.st.Device == "" {
			return ErrNotLoggedIn
		}
		defer l.sec.wipe()
		if err := fn(l.st, l.sec); err != nil {
			return err
		}
		return s.save(l)
	})
}

// create saves the state and secrets of a new login. prepare runs under
// the lock before anything is written and may refuse; it receives the
// state left by an earlier login (pins), or nil.
func (s *store) create(prepare func(old *state) error, st *state, sec *secrets) error {
	return s.locked(true, func() error {
		raw, err := readFile(s.dir, stateFile)
		if err != nil {
			return err
		}
		var old *state
		if raw != nil {
			if old, err = decodeState(raw); err != nil {
				return err
			}
			if old.Device != "" {
				return ErrLoggedIn
			}
		}
		if err := prepare(old); err != nil {
			return err
		}
		st.Encrypted = s.passphrase != nil
		if st.Encrypted {
			s.sealer.wipe()
			if s.sealer, err = newSealer(s.passphrase, s.kdf); err != nil {
				return err
			}
		}
		return s.save(loaded{st: st, sec: sec})
	})
}

// wipe deletes the secrets and the seen ids and forgets the device in the
// state, keeping the node, the user, the pins and the history.
func (s *store) wipe() error {
	return s.locked(true, func() error {
		raw, err := readFile(s.dir, stateFile)
		if err != nil {
			return err
		}
		for _, name := range []string{secretsFile, sealedFile, seenFile} {
			if err := removeFile(s.dir, name); err != nil {
				return err
			}
		}
		if raw == nil {
			return syncDir(s.dir)
		}
		st, err := decodeState(raw)
		if err != nil {
			return err
		}
		st.Device, st.Encrypted, st.Cursor, st.Acked = "", false, 0, 0
		if err := s.save(loaded{st: st, stRaw: raw}); err != nil {
			return err
		}
		return syncDir(s.dir)
	})
}
