package client

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Names of the files in the state directory.
const (
	stateFile   = "state.json"
	secretsFile = "secrets.json"
	sealedFile  = "secrets.enc"
	historyFile = "history.jsonl"
	seenFile    = "seen"
	lockFile    = "lock"
	recvLock    = "recv.lock"
)

// ensureDir creates dir with mode 0700, or tightens an existing one to
// 0700.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("client: state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("client: state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("client: state directory %s is not a directory", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("client: state directory: %w", err)
		}
	}
	return nil
}

// writeFileAtomic replaces dir/name with data, mode 0600: a temporary file
// is written and synced, renamed over the old one, and the directory
// synced, so a crash leaves either the old or the new content.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("client: write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("client: write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("client: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("client: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("client: write %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("client: write %s: %w", name, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or a removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("client: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("client: sync %s: %w", dir, err)
	}
	return nil
}

// appendSync appends data (whole lines) to dir/name, mode 0600, and syncs
// it. If a crash left a partial last line, it is ended first so that the
// new record stays whole.
func appendSync(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("client: append %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("client: append %s: %w", name, err)
	}
	if fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("client: append %s: %w", name, err)
		}
		if last[0] != '\n' {
			data = append([]byte{'\n'}, data...)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("client: append %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("client: append %s: %w", name, err)
	}
	if fi.Size() == 0 {
		return syncDir(dir)
	}
	return nil
}

// removeFile removes dir/name if it exists.
func removeFile(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("client: remove %s: %w", name, err)
	}
	return nil
}

// readFile reads dir/name; a missing file gives nil, nil.
func readFile(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: read %s: %w", name, err)
	}
	return b, nil
}
