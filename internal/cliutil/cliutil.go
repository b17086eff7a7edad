// Package cliutil holds what the command-line tools (valisectl, valise)
// share: usage errors, quiet flag sets that accept flags after positional
// arguments, and reading a secret's first line from stdin. Only cmd/*
// imports it.
package cliutil

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// UsageError is a command-line mistake; tools exit 2 on it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// UsageErrorf returns a *UsageError.
func UsageErrorf(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// NewFlagSet returns a silent flag set: the tool reports its errors.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// FlagError turns a flag parsing error into a usage error, keeping
// flag.ErrHelp so that -h prints the usage.
func FlagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &UsageError{Msg: err.Error()}
}

// ParseInterleaved parses fs from args, allowing flags after positional
// arguments ("user create alice --password-stdin"), and returns the
// positional arguments. Everything after "--" is positional.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := args[:len(args)-len(rest)]
		if len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// MaxSecretRead bounds what ReadFirstLine reads.
const MaxSecretRead = 64 << 10

// ReadFirstLine reads the first line of r without its line ending (for a
// password piped in with --password-stdin). An empty line is an error.
func ReadFirstLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, MaxSecretRead)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("--password-stdin: no password on stdin")
	}
	return line, nil
}
