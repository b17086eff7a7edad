package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxPasswordRead bounds what is read from stdin for a password; the node
// rejects passwords longer than 1,024 bytes.
const maxPasswordRead = 64 << 10

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
