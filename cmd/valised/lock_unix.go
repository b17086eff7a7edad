//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes an exclusive lock on DIR/valised.lock for the life of
// the process, so two daemons never share a data directory (and its
// single-writer database). The kernel drops the lock when the process
// dies, even by kill -9.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "valised.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is locked: another valised is serving this data directory", path)
	}
	return func() { f.Close() }, nil
}

// chownLikeDir gives path the owner and group of dir when this process
// runs as root, so that files root writes into a node's data directory
// (restore run right after `systemctl stop`) stay usable by the node's
// user. Otherwise it does nothing.
func chownLikeDir(path, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return os.Chown(path, int(st.Uid), int(st.Gid))
}
