package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/valise-im/valise/internal/cliutil"
)

// readPassword reads the password: from the first line of stdin with
// --password-stdin (refused on a terminal, where it would echo), else at
// a prompt without echo when stdin is a terminal. Anything else is refused:
// passwords never come from arguments.
func (c *cli) readPassword(fromStdin bool, user string) (string, error) {
	f, isFile := c.stdin.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	if !fromStdin {
		if !tty {
			return "", usageErrorf("stdin is not a terminal to prompt for the password on: pipe it in with --password-stdin")
		}
		fmt.Fprintf(c.stderr, "Password for %s: ", user)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if len(b) == 0 {
			return "", errors.New("empty password")
		}
		return string(b), nil
	}
	if tty {
		return "", errors.New("--password-stdin: stdin is a terminal, where a typed password would echo; drop --password-stdin to be prompted, or pipe the password in")
	}
	return cliutil.ReadFirstLine(c.stdin)
}
