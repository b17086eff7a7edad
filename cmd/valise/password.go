package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// maxPasswordRead bounds what is read from stdin for a password; the node
// rejects passwords longer than 1,024 bytes.
const maxPasswordRead = 64 << 10

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
	line, err := bufio.NewReader(io.LimitReader(c.stdin, maxPasswordRead)).ReadString('\n')
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
