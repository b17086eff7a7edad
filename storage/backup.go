package storage

import (
	"context"
	"errors"
	"io"
)

// ErrUnsupported: the backend cannot do what was asked (e.g. an online
// backup of a PostgreSQL database, which pg_dump makes instead).
var ErrUnsupported = errors.New("storage: not supported by this backend")

// ErrNoSpace: there is not enough free disk space for what was asked (a
// backup's temporary copy); the error's text says how much is free and
// how much is needed.
var ErrNoSpace = errors.New("storage: not enough free space")

// Backup is a consistent copy of a database, ready to be read once.
// Closing it releases (and removes) whatever holds the copy.
type Backup interface {
	io.ReadCloser
	// Size is the copy's length in bytes.
	Size() int64
	// SchemaVersion is the copy's schema version.
	SchemaVersion() int64
}

// Backuper is implemented by stores that can copy their database while
// the node serves. Callers find it with a type assertion on a Store.
type Backuper interface {
	// Backup makes a consistent snapshot of the whole database, as of one
	// instant, without stopping writers for longer than the backend
	// needs, and returns it for reading. The caller must Close it. A
	// backend that cannot do this returns an error wrapping
	// ErrUnsupported; one that would need more free disk space than there
	// is, for a copy beside the database, refuses before writing anything
	// with an error wrapping ErrNoSpace. Backup is safe for concurrent use, but each call
	// makes a full copy: callers should run one at a time.
	Backup(ctx context.Context) (Backup, error)
}
