// Package backend is the one factory that picks a concrete storage backend
// from configuration. Only cmd/* and tests import it.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres"
	"github.com/valise-im/valise/storage/sqlite"
)

// Config selects a backend.
type Config struct {
	// Driver is "sqlite" or "postgres".
	Driver string
	// SQLitePath is the database file for sqlite.
	SQLitePath string
	// PostgresDSN is the connection string for postgres.
	PostgresDSN string
}

// Open opens (creating and migrating as needed) the configured store.
func Open(ctx context.Context, c Config, log *slog.Logger) (storage.Store, error) {
	switch c.Driver {
	case "sqlite", "":
		s, err := sqlite.Open(ctx, c.SQLitePath, sqlite.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "postgres":
		s, err := postgres.Open(ctx, c.PostgresDSN, postgres.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("backend: unknown storage driver %q", c.Driver)
}

// ReadDSN returns the PostgreSQL DSN: $VALISE_POSTGRES_DSN if set, else
// the content of file.
func ReadDSN(file string) (string, error) {
	if v := os.Getenv("VALISE_POSTGRES_DSN"); v != "" {
		return v, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("backend: read postgres dsn: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
