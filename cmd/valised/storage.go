package main

import (
	"github.com/valise-im/valise/internal/backend"
	"github.com/valise-im/valise/internal/config"
)

// backendConfig returns the storage backend that cfg, the config of the
// node in dir, names: the SQLite file or the PostgreSQL DSN (read from
// storage.postgres.dsn_file or $VALISE_POSTGRES_DSN).
func backendConfig(dir string, cfg config.Config) (backend.Config, error) {
	bc := backend.Config{Driver: cfg.Storage.Driver, SQLitePath: config.Path(dir, cfg.Storage.SQLite.Path)}
	if bc.Driver == "postgres" {
		dsn, err := backend.ReadDSN(config.Path(dir, cfg.Storage.Postgres.DSNFile))
		if err != nil {
			return backend.Config{}, err
		}
		bc.PostgresDSN = dsn
	}
	return bc, nil
}
