package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/valise-im/valise/internal/backend"
	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres"
	"github.com/valise-im/valise/storage/sqlite"
)

// exitPending is the exit status of "valised migrate --check" when
// migrations would run.
const exitPending = 3

// errPending makes run exit with exitPending.
var errPending = errors.New("migrations pending")

// cmdMigrate reports (--check) or applies the schema migrations the
// node's database lacks. serve applies them too, at every start; migrate
// lets an admin see and run them first, e.g. right after a backup.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "the node's data directory (its valised.yaml names the database)")
	check := fs.Bool("check", false, "only list the migrations that would run; exit 3 if any would")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "valised migrate: --data DIR is required")
		return errUsage
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		return err
	}
	bc, err := backendConfig(*dir, cfg)
	if err != nil {
		return err
	}
	if bc.Driver != "postgres" && !*check {
		// Applying needs the database to itself: no node may serve it.
		unlock, err := lockDataDir(*dir)
		if err != nil {
			return fmt.Errorf("migrate: %w (stop it first)", err)
		}
		defer unlock()
	}
	var st storage.SchemaStatus
	if bc.Driver == "postgres" {
		st, err = postgres.Status(ctx, bc.PostgresDSN)
	} else {
		st, err = sqlite.Status(ctx, bc.SQLitePath)
	}
	if err != nil {
		return err
	}
	if len(st.Pending) == 0 {
		fmt.Fprintf(stdout, "schema version %d: up to date\n", st.Current)
		return nil
	}
	verb := "would run"
	if !*check {
		verb = "to apply"
	}
	fmt.Fprintf(stdout, "schema version %d, this valised knows up to %d; %d migration(s) %s:\n", st.Current, st.Latest, len(st.Pending), verb)
	for _, m := range st.Pending {
		fmt.Fprintf(stdout, "  %s\n", m.Name)
	}
	if *check {
		return errPending
	}
	s, err := backend.Open(ctx, bc, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stdout, "schema version %d: up to date\n", st.Latest)
	return nil
}
