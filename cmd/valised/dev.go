package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/valise-im/valise/internal/config"
)

// ensureDevNode creates the development node in dir unless it exists: name
// localhost, every listener on loopback, a certificate for localhost,
// 127.0.0.1 and ::1.
func ensureDevNode(dir string, stdout io.Writer) error {
	if _, err := os.Stat(filepath.Join(dir, config.FileName)); err == nil {
		return nil
	}
	d := config.Default()
	res, err := initNode(initParams{
		Dir:        dir,
		Name:       "localhost",
		Client:     d.Listen.Client,
		Federation: d.Listen.Federation,
		Metrics:    d.Listen.Metrics,
		ExtraIPs:   []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
	if err != nil {
		return fmt.Errorf("creating the development node: %w", err)
	}
	fmt.Fprintf(stdout, "created development node in %s\n", res.DataDir)
	return nil
}
