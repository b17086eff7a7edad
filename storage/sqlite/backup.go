package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/valise-im/valise/storage"
)

var _ storage.Backuper = (*Store)(nil)

// backupSuffix ends the names of the temporary files Backup writes beside
// the database; Open removes any a crash left behind.
const backupSuffix = ".backup.tmp"

// Backup copies the database with VACUUM INTO, on a read connection, into
// a temporary file beside it (in the data directory) and returns that file
// for reading. The copy is a consistent snapshot of the last commit before
// it began; writers go on meanwhile (WAL). The file is unlinked as soon as
// it is open, so nothing is left on disk once the Backup is closed, or if
// the process dies while it is read.
func (s *Store) Backup(ctx context.Context) (storage.Backup, error) {
	if err := s.checkBackupSpace(); err != nil {
		return nil, err
	}
	tmp := fmt.Sprintf("%s.%d%s", s.path, time.Now().UnixNano(), backupSuffix)
	// A connection of its own: VACUUM INTO writes a new database, which
	// the query-only read pool may not, and it must not wait behind the
	// writer. In WAL mode it reads one snapshot while writers go on.
	db, err := sql.Open("sqlite", s.path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, tmp)
	db.Close()
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("sqlite: backup: vacuum into: %w", err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	b := &backupFile{File: f}
	fi, err := f.Stat()
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("sqlite: backup: %w", err)
	}
	b.size = fi.Size()
	// Where an open file cannot be unlinked, Close removes it.
	if os.Remove(tmp) != nil {
		b.remove = tmp
	}
	return b, nil
}

// backupHeadroom is the free space a backup leaves the node's own writes
// beyond the copy itself.
const backupHeadroom = 64 << 20

// checkBackupSpace refuses a backup whose copy (at most the database and
// its write-ahead log) would leave less than backupHeadroom free in the
// data directory: the node's commits would fail with a full disk while
// the copy is written.
func (s *Store) checkBackupSpace() error {
	if s.freeSpace == nil {
		return nil
	}
	var need uint64 = backupHeadroom
	for _, p := range []string{s.path, s.path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			need += uint64(fi.Size())
		}
	}
	free, err := s.freeSpace(filepath.Dir(s.path))
	if err != nil {
		return nil // unknown: VACUUM INTO fails cleanly on a full disk
	}
	if free < need {
		return fmt.Errorf("%w in %s for the backup's temporary copy: %d MiB free, %d MiB needed (the database and its log, and %d MiB for the node's own writes)",
			storage.ErrNoSpace, filepath.Dir(s.path), free>>20, need>>20, backupHeadroom>>20)
	}
	return nil
}

// backupFile is a Backup held in a temporary file.
type backupFile struct {
	*os.File
	size   int64
	remove string // path to remove on Close, if not unlinked yet
}

func (b *backupFile) Size() int64 { return b.size }

// SchemaVersion is this binary's: Open migrated the database to it.
func (b *backupFile) SchemaVersion() int64 { return SchemaVersion() }

func (b *backupFile) Close() error {
	err := b.File.Close()
	if b.remove != "" {
		os.Remove(b.remove)
	}
	return err
}

// removeStaleBackups removes temporary backup files a crash left beside
// the database at path. Only Open calls it, before the store serves.
func removeStaleBackups(path string) {
	matches, _ := filepath.Glob(escapeGlob(path) + ".*" + backupSuffix)
	for _, m := range matches {
		os.Remove(m)
	}
}

// escapeGlob quotes the glob metacharacters in s.
func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}
