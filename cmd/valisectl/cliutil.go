package main

import (
	"flag"

	"github.com/valise-im/valise/internal/cliutil"
)

// The shared command-line helpers (internal/cliutil) under this command's
// short names.
type usageError = cliutil.UsageError

func usageErrorf(format string, args ...any) error { return cliutil.UsageErrorf(format, args...) }

func newFlagSet(name string) *flag.FlagSet { return cliutil.NewFlagSet(name) }

func flagError(err error) error { return cliutil.FlagError(err) }

func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	return cliutil.ParseInterleaved(fs, args)
}
