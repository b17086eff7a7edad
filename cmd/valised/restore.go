package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/storage/sqlite"
)

// cmdRestore puts a backup made by "valisectl backup" back as the SQLite
// database of a stopped node. It holds the data directory's lock (serve
// takes the same), so it refuses while a node serves there.
func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "the node's data directory (its valised.yaml names the database)")
	from := fs.String("from", "", "the backup file to restore")
	force := fs.Bool("force", false, "replace an existing database, keeping it as DB.TIMESTAMP.bak")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *dir == "" || *from == "" {
		fmt.Fprintln(stderr, "valised restore: --data DIR and --from FILE are required")
		return errUsage
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		return err
	}
	if cfg.Storage.Driver != "sqlite" {
		return fmt.Errorf("restore: this node stores its data in %s, not SQLite: restore it with pg_restore (see docs/ops/backups.md)", cfg.Storage.Driver)
	}
	unlock, err := lockDataDir(*dir)
	if err != nil {
		return fmt.Errorf("restore: %w (stop it first)", err)
	}
	defer unlock()
	// Run as root (as after `systemctl stop`), restore leaves what it
	// writes to the data directory's owner, the node's user.
	if err := chownLikeDir(filepath.Join(*dir, "valised.lock"), *dir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db := config.Path(*dir, cfg.Storage.SQLite.Path)
	res, err := restoreSQLite(ctx, db, *from, *force, time.Now())
	if err != nil {
		return err
	}
	if res.kept != "" {
		fmt.Fprintf(stdout, "kept the previous database as %s\n", res.kept)
	}
	fmt.Fprintf(stdout, "restored %s into %s (schema version %d", *from, db, res.version)
	if res.pending > 0 {
		fmt.Fprintf(stdout, "; %d migration(s) will run when the node starts", res.pending)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}

type restoreResult struct {
	kept    string // where the previous database went, if any
	version int64  // the restored database's schema version
	pending int    // migrations serve will apply
}

// restoreSQLite copies the backup from into a temporary file beside db,
// checks it (sqlite.CheckFile) and syncs it, keeps an existing database
// as db.TIMESTAMP.bak when force is set, and renames the copy to db. The
// caller holds the data directory's lock.
//
// db always names a whole database: the existing one is first
// checkpointed (its write-ahead log folded into the file, so the file
// alone is the database and no -wal of it can meet the restored file),
// then kept under the .bak name as a hard link, and only then replaced by
// one rename. A crash at any point leaves either the old database or the
// restored one at db, and the old one at the .bak name once it was made.
func restoreSQLite(ctx context.Context, db, from string, force bool, now time.Time) (restoreResult, error) {
	// A backup with a non-empty write-ahead log beside it (a copy of a
	// database that was not checkpointed) would lose the log's
	// transactions: the copy takes the main file only.
	if fi, err := os.Stat(from + "-wal"); err == nil && fi.Size() > 0 {
		return restoreResult{}, fmt.Errorf("restore: %s-wal is beside %s: the file alone lacks the transactions in that log (restore a backup made with valisectl backup, which has none)", from, from)
	}
	removeStaleRestores(db)
	existing := false
	if _, err := os.Lstat(db); err == nil {
		existing = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return restoreResult{}, fmt.Errorf("restore: %w", err)
	}
	if !existing {
		if _, err := os.Lstat(db + "-wal"); err == nil {
			return restoreResult{}, fmt.Errorf("restore: %s-wal exists without %s: move it away first", db, db)
		}
	}
	if existing && !force {
		return restoreResult{}, fmt.Errorf("restore: %s exists; pass --force to replace it (it is kept as a .bak file)", db)
	}
	tmp, err := copyToTemp(from, db)
	if err != nil {
		return restoreResult{}, err
	}
	ok := false
	defer func() {
		if !ok {
			removeDB(tmp)
		}
	}()
	st, err := sqlite.CheckFile(ctx, tmp)
	// CheckFile only reads; drop whatever side files SQLite made.
	os.Remove(tmp + "-wal")
	os.Remove(tmp + "-shm")
	if err != nil {
		return restoreResult{}, fmt.Errorf("restore: %s: %w", from, err)
	}
	if err := chownLikeDir(tmp, filepath.Dir(db)); err != nil {
		return restoreResult{}, fmt.Errorf("restore: %w", err)
	}
	var res restoreResult
	res.version, res.pending = st.Current, len(st.Pending)
	if existing {
		if err := sqlite.Checkpoint(ctx, db); err != nil {
			return restoreResult{}, fmt.Errorf("restore: fold the existing database's log into it (nothing changed): %w", err)
		}
		if fi, err := os.Stat(db + "-wal"); err == nil && fi.Size() > 0 {
			return restoreResult{}, fmt.Errorf("restore: %s-wal is not empty after a checkpoint (nothing changed)", db)
		}
		os.Remove(db + "-wal")
		os.Remove(db + "-shm")
		res.kept = fmt.Sprintf("%s.%s.bak", db, now.UTC().Format("20060102T150405Z"))
		if err := os.Link(db, res.kept); err != nil {
			return restoreResult{}, fmt.Errorf("restore: keep the existing database as %s (nothing changed): %w", res.kept, err)
		}
		if err := syncDir(filepath.Dir(db)); err != nil {
			return restoreResult{}, fmt.Errorf("restore: %w (the existing database is still in place, and kept as %s)", err, res.kept)
		}
	}
	if err := os.Rename(tmp, db); err != nil {
		if res.kept != "" {
			return restoreResult{}, fmt.Errorf("restore: %w (the existing database is still in place, and kept as %s)", err, res.kept)
		}
		return restoreResult{}, fmt.Errorf("restore: %w", err)
	}
	ok = true
	if err := syncDir(filepath.Dir(db)); err != nil {
		return restoreResult{}, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// removeStaleRestores removes the temporary copies an interrupted restore
// left beside db. The caller holds the data directory's lock.
func removeStaleRestores(db string) {
	stale, _ := filepath.Glob(db + ".restore-*.tmp")
	for _, p := range stale {
		removeDB(p)
	}
}

// copyToTemp copies from into a new synced file (mode 0600) beside db and
// returns its name.
func copyToTemp(from, db string) (string, error) {
	src, err := os.Open(from)
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	dst, err := os.CreateTemp(filepath.Dir(db), filepath.Base(db)+".restore-*.tmp")
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Chmod(0o600)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst.Name())
		return "", fmt.Errorf("restore: copy %s: %w", from, err)
	}
	return dst.Name(), nil
}

// removeDB removes a database file and its side files.
func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(path + suffix)
	}
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
