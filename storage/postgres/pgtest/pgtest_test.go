package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			"postgres://postgres@127.0.0.1:5432/valise_test_x?sslmode=disable"},
		{"url without database", "postgresql://u:p@db.example/?sslmode=require",
			"postgresql://u:p@db.example/valise_test_x?sslmode=require"},
		{"keyword/value", "host=127.0.0.1 user=postgres dbname=postgres sslmode=disable",
			"host=127.0.0.1 user=postgres dbname=postgres sslmode=disable dbname=valise_test_x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withDatabase(tt.dsn, "valise_test_x")
			if err != nil {
				t.Fatalf("withDatabase: %v", err)
			}
			if got != tt.want {
				t.Errorf("withDatabase: got %q, want %q", got, tt.want)
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil {
				t.Fatalf("ParseConfig(%q): %v", got, err)
			}
			if cfg.Database != "valise_test_x" {
				t.Errorf("database: got %q, want valise_test_x", cfg.Database)
			}
		})
	}
}

func TestDSNCreatesAndDrops(t *testing.T) {
	base := os.Getenv(EnvVar)
	if base == "" {
		t.Skip(EnvVar + " not set")
	}
	var name string
	var left *pgx.Conn
	t.Run("use", func(t *testing.T) {
		conn, err := pgx.Connect(context.Background(), DSN(t))
		if err != nil {
			t.Fatalf("connect to the test database: %v", err)
		}
		// The connection stays open past the test's end: it must not keep
		// the database from being dropped.
		left = conn
		if err := conn.QueryRow(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	if left != nil {
		defer left.Close(context.Background())
	}
	if name == "" {
		t.Fatal("the subtest learnt no database name")
	}
	conn, err := pgx.Connect(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}
