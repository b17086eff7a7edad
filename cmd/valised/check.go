package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/valise-im/valise/internal/config"
)

// cmdCheck validates a node's configuration and the files it names, and
// reports every problem at once, one "PATH: message" line each; warnings
// (a certificate about to expire) are printed but do not fail it.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "the node's data directory (required)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *dir == "" {
		fmt.Fprintln(stderr, "usage: valised check --data DIR")
		return errUsage
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		return err
	}
	f := inspect(*dir, cfg)
	for _, w := range f.warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	file := filepath.Join(*dir, config.FileName)
	if err := f.err(file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (node %s, storage %s)\n", file, cfg.Node.Name, cfg.Storage.Driver)
	return nil
}

// inspect validates cfg and the files it names; check and serve share it.
func inspect(dir string, cfg config.Config) *findings {
	f := newFindings()
	f.addValidation(cfg.Validate(dir, true))
	checkFiles(f, dir, cfg, time.Now())
	return f
}

// err returns every problem, sorted, or nil.
func (f *findings) err(file string) error {
	if len(f.problems) == 0 {
		return nil
	}
	slices.Sort(f.problems)
	return fmt.Errorf("%s has problems:\n%s", file, strings.Join(f.problems, "\n"))
}
