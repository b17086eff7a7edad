package storage

import (
	"errors"
	"fmt"
)

// ErrSchemaTooNew: the database was migrated by a newer valised than this
// one. Its schema may not be what this binary expects, so the backend
// refuses to touch it. Backends return a *SchemaTooNewError, which matches
// it under errors.Is.
var ErrSchemaTooNew = errors.New("storage: database schema is newer than this binary")

// SchemaTooNewError names both schema versions of a refused database.
type SchemaTooNewError struct {
	Database int64 // the newest migration recorded in the database
	Binary   int64 // the newest migration this binary carries
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("this database was migrated by a newer valised (schema %d); this binary knows up to %d: run the newer valised or restore a backup",
		e.Database, e.Binary)
}

// Is reports whether target is ErrSchemaTooNew.
func (e *SchemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// Migration names one embedded schema migration.
type Migration struct {
	Version int64
	Name    string // e.g. 0002_idempotency_created_at.sql
}

// SchemaStatus is a database's schema version next to this binary's.
type SchemaStatus struct {
	// Current is the newest migration recorded in the database; 0 for an
	// empty (or absent) database.
	Current int64
	// Latest is the newest migration this binary carries.
	Latest int64
	// Pending lists the migrations that opening the database would apply,
	// in order; empty when it is up to date.
	Pending []Migration
}
