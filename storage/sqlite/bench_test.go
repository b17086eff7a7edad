package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/valise-im/valise/storage/storagetest"
)

// BenchmarkCommitBatch: see storagetest.BenchCommitBatch. The database is a
// file in the test's temporary directory, with full fsync on commit.
func BenchmarkCommitBatch(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	storagetest.BenchCommitBatch(b, s)
}
