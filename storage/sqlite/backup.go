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
