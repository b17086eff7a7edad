package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/valise-im/valise/client"
)

// cli is one invocation: the global flags and the standard streams.
type cli struct {
	g      globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// globals are the flags every command accepts.
type globals struct {
	state          string
	passphraseFile string
	verbose        bool
}

// defaultGlobals returns the defaults: --state is $VALISE_STATE, else
// ~/.valise.
func defaultGlobals() globals {
	state := os.Getenv("VALISE_STATE")
	if state == "" {
		if home, err := os.UserHomeDir(); err == nil {
			state = filepath.Join(home, ".valise")
		}
	}
	return globals{state: state}
}

// register defines the global flags on fs with the current values as
// defaults, so that registering them again on the command's flag set keeps
// what was given before the command.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.state, "state", g.state, "state directory")
	fs.StringVar(&g.passphraseFile, "passphrase-file", g.passphraseFile, "file holding the passphrase of the secrets")
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "log to stderr")
}

// command is one valise command.
type command struct {
	name    string
	minArgs int
	maxArgs int // -1: any number
	// setup registers the command's flags on fs and returns the function
	// that runs it with the positional arguments once fs is parsed.
	setup func(fs *flag.FlagSet) func(ctx context.Context, c *cli, args []string) error
}

func commands() []command {
	return []command{
		{"login", 0, 0, loginCmd},
		{"send", 1, -1, sendCmd},
		{"recv", 0, 0, recvCmd},
		{"history", 0, 1, historyCmd},
		{"devices", 0, 1, devicesCmd},
		{"fingerprint", 1, 1, fingerprintCmd},
		{"verify", 2, -1, verifyCmd},
		{"logout", 0, 0, logoutCmd},
	}
}

// usageError is a mistake on the command line; it exits with status 2.

// run runs valise with args (without the program name) and returns the
// exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{g: defaultGlobals(), stdin: stdin, stdout: stdout, stderr: stderr}
	err := c.dispatch(ctx, args)
	var uerr *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usageText)
		return 0
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "valise: %s\nRun 'valise help' for usage.\n", uerr.Msg)
		return 2
	}
	// Errors may quote the node (gRPC statuses) or other users: sanitize.
	fmt.Fprintf(stderr, "valise: %s\n", sanitize(errorText(err)))
	return 1
}

// rpcPrefix is how grpc-go renders a status inside an error chain.
var rpcPrefix = regexp.MustCompile(`rpc error: code = (\w+) desc = `)

// errorText renders err for a person: gRPC statuses as "message (Code)".
func errorText(err error) string {
	s := err.Error()
	if m := rpcPrefix.FindStringSubmatch(s); m != nil {
		s = rpcPrefix.ReplaceAllString(s, "") + " (" + m[1] + ")"
	}
	s = strings.TrimPrefix(s, "client: ")
	if strings.Contains(s, "certificate is valid for") || strings.Contains(s, "doesn't contain any IP SANs") {
		s += "\nhint: the node's certificate names the node, not this address; pass --server-name NODE-NAME at login"
	}
	return s
}

// dispatch parses the command line and runs the command.
func (c *cli) dispatch(ctx context.Context, args []string) error {
	if err := refuseSecretFlags(args); err != nil {
		return err
	}
	top := newFlagSet("valise")
	c.g.register(top)
	if err := top.Parse(args); err != nil {
		return flagError(err)
	}
	args = top.Args()
	if len(args) == 0 {
		return usageErrorf("no command given")
	}
	if args[0] == "help" {
		return flag.ErrHelp
	}
	var cmd *command
	for _, k := range commands() {
		if k.name == args[0] {
			cmd = &k
			break
		}
	}
	if cmd == nil {
		return usageErrorf("unknown command %q", args[0])
	}
	fs := newFlagSet(cmd.name)
	c.g.register(fs)
	runCmd := cmd.setup(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagError(err)
	}
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		return usageErrorf("%s: wrong number of arguments (%d)", cmd.name, len(pos))
	}
	if c.g.state == "" {
		return usageErrorf("no state directory: give --state or set VALISE_STATE")
	}
	return runCmd(ctx, c, pos)
}

// config returns the client configuration of the global flags.
func (c *cli) config() (client.Config, error) {
	cfg := client.Config{StateDir: c.g.state}
	if c.g.passphraseFile != "" {
		b, err := os.ReadFile(c.g.passphraseFile)
		if err != nil {
			return cfg, fmt.Errorf("--passphrase-file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return cfg, errors.New("--passphrase-file: the file is empty")
		}
		cfg.Passphrase = b
	}
	if c.g.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg, nil
}

// open opens the logged-in device, which tops up its keys (Maintain).
func (c *cli) open(ctx context.Context) (*client.Client, error) {
	return c.openWith(ctx, false)
}

// openWith opens the logged-in device, running Maintain unless
// skipMaintain, and explains the usual failures.
func (c *cli) openWith(ctx context.Context, skipMaintain bool) (*client.Client, error) {
	cfg, err := c.config()
	if err != nil {
		return nil, err
	}
	cfg.SkipMaintain = skipMaintain
	cl, err := client.Open(ctx, cfg)
	switch {
	case errors.Is(err, client.ErrNotLoggedIn):
		return nil, fmt.Errorf("no device is logged in with state directory %s; run 'valise login' first (or give --state)", c.g.state)
	case errors.Is(err, client.ErrNeedPassphrase):
		return nil, errors.New("the keys in the state directory are sealed with a passphrase: give --passphrase-file")
	case errors.Is(err, client.ErrRevoked):
		return nil, errors.New("the node no longer accepts this device (it was revoked); run 'valise logout' to clear it here, then log in again")
	}
	return cl, err
}

// warn prints a warning loudly on stderr.
func (c *cli) warn(w client.Warning) {
	if w.Kind == client.WarnReplay {
		fmt.Fprintf(c.stderr, "valise: note: %s\n", sanitize(w.String()))
		return
	}
	fmt.Fprintf(c.stderr, "WARNING: %s\n", sanitize(w.String()))
}

// refuseSecretFlags rejects a password or passphrase given on the
// command line, where other users could see it and shell history would
// keep it. It never repeats the value.
func refuseSecretFlags(args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "password":
			return usageErrorf("passwords are never accepted as arguments; type it at the prompt or pipe it in with --password-stdin")
		case "passphrase":
			return usageErrorf("passphrases are never accepted as arguments; use --passphrase-file")
		}
	}
	return nil
}
