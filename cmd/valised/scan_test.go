package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise/internal/backend"
	"github.com/valise-im/valise/internal/config"
)

// storageFiles returns the files that hold a node's database: the SQLite
// database with its WAL and shared memory, or the whole PostgreSQL data
// directory (tables and WAL; readable when the tests run as root, as in
// CI), after a CHECKPOINT so recent writes are in the table files too.
func (n *testNode) storageFiles(t *testing.T) []string {
	t.Helper()
	if n.cfg.Storage.Driver == "sqlite" {
		base := config.Path(n.dir, n.cfg.Storage.SQLite.Path)
		return []string{base, base + "-wal", base + "-shm"}
	}
	dsn, err := backend.ReadDSN(config.Path(n.dir, n.cfg.Storage.Postgres.DSNFile))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var dataDir string
	if err := conn.QueryRow(t.Context(), "SHOW data_directory").Scan(&dataDir); err != nil {
		t.Fatalf("PostgreSQL data directory: %v", err)
	}
	if _, err := conn.Exec(t.Context(), "CHECKPOINT"); err != nil {
		t.Fatalf("CHECKPOINT: %v", err)
	}
	var files []string
	err = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Skipf("cannot read the PostgreSQL data directory %s (run as root, as CI does): %v", dataDir, err)
	}
	return files
}

// filesContaining returns the files among paths that contain needle.
// Missing files are skipped.
func filesContaining(t *testing.T, paths []string, needle []byte) []string {
	t.Helper()
	var hits []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
	}
	return hits
}
