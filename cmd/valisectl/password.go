package main

import (
	"errors"
	"os"

	"github.com/valise-im/valise/internal/cliutil"
)

// readPassword reads the first line of stdin, without its line ending.
// It refuses to read from a terminal, where the password would echo (and
// from any character device, such as /dev/null).
func (c *cli) readPassword(fromStdin bool) (string, error) {
	if !fromStdin {
		return "", usageErrorf("--password-stdin is required: the password is read from stdin, never from arguments")
	}
	if f, ok := c.stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return "", errors.New("--password-stdin: stdin is a terminal or device, where a typed password would echo; pipe it in from a file or a password manager")
		}
	}
	return cliutil.ReadFirstLine(c.stdin)
}
