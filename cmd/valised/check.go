package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/valise-im/valise/internal/config"
)

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
	if err := cfg.Validate(*dir, true); err != nil {
		return fmt.Errorf("%s has problems:\n%v", filepath.Join(*dir, config.FileName), err)
	}
	if err := checkSigningKey(config.Path(*dir, cfg.Node.SigningKeyFile)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (node %s, storage %s)\n", filepath.Join(*dir, config.FileName), cfg.Node.Name, cfg.Storage.Driver)
	return nil
}
