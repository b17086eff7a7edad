package postgres_test

import (
	"testing"

	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres/pgtest"
	"github.com/valise-im/valise/storage/storagetest"
)

// TestContract runs the storage contract suite, each subtest on a fresh
// database. It skips unless VALISE_TEST_POSTGRES names a server.
func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return openStore(t, pgtest.DSN(t))
	})
}
