package postgres

import (
	"context"
	"fmt"

	"github.com/valise-im/valise/storage"
)

var _ storage.Backuper = (*Store)(nil)

// Backup is not done by the node on PostgreSQL: the database server owns
// the data, and pg_dump (or the server's own continuous archiving) backs
// it up. It always returns an error wrapping storage.ErrUnsupported.
func (s *Store) Backup(context.Context) (storage.Backup, error) {
	return nil, fmt.Errorf("postgres: backup: %w: back up a PostgreSQL node with pg_dump -Fc", storage.ErrUnsupported)
}
