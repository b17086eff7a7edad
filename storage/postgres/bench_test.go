package postgres_test

import (
	"testing"

	"github.com/valise-im/valise/storage/postgres/pgtest"
	"github.com/valise-im/valise/storage/storagetest"
)

// BenchmarkCommitBatch: see storagetest.BenchCommitBatch.
func BenchmarkCommitBatch(b *testing.B) {
	storagetest.BenchCommitBatch(b, openStore(b, pgtest.DSN(b)))
}
