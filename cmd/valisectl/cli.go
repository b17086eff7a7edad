package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/status"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// cli is one invocation: the global flags, the standard streams, the
// password read from stdin for commands that take one, and, once dialled,
// the AdminService client.
type cli struct {
	g        globals
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	password string
	admin    adminv1.AdminServiceClient
}

// command is one "GROUP VERB" (or a lone "VERB") of valisectl.
type command struct {
	name     string // e.g. "user create"
	nargs    int    // exact number of positional arguments
	password bool   // takes --password-stdin (required), read into cli.password
	// setup registers the command's flags on fs and returns the function
	// that runs it with the positional arguments once fs is parsed.
	setup func(fs *flag.FlagSet) func(ctx context.Context, c *cli, args []string) error
}

func commands() []command {
	return []command{
		{"user create", 1, true, userCreate},
		{"user list", 0, false, userList},
		{"user show", 1, false, userShow},
		{"user deactivate", 1, false, userDeactivate},
		{"user reactivate", 1, false, userReactivate},
		{"user reset-password", 1, true, userResetPassword},
		{"device list", 1, false, deviceList},
		{"device revoke", 2, false, deviceRevoke},
		{"audit list", 0, false, auditList},
		{"peer add", 1, false, peerAdd},
		{"peer list", 0, false, peerList},
		{"peer block", 1, false, peerBlock},
		{"peer unblock", 1, false, peerUnblock},
		{"peer remove", 1, false, peerRemove},
		{"peer retry", 1, false, peerRetry},
		{"peer update", 1, false, peerUpdate},
		{"backup", 0, false, backup},
	}
}

// usageError is a mistake on the command line; it exits with status 2.

// run runs valisectl with args (without the program name) and returns the
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
		fmt.Fprintf(stderr, "valisectl: %s\nRun 'valisectl help' for usage.\n", uerr.Msg)
		return 2
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(stderr, "valisectl: %s (%s)\n", st.Message(), st.Code())
	} else {
		fmt.Fprintf(stderr, "valisectl: %v\n", err)
	}
	return 1
}

// dispatch parses the command line, dials the node and runs the command.
func (c *cli) dispatch(ctx context.Context, args []string) error {
	if err := refusePasswordFlag(args); err != nil {
		return err
	}
	top := newFlagSet("valisectl")
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
	cmd, rest, err := lookup(args)
	if err != nil {
		return err
	}
	fs := newFlagSet(cmd.name)
	c.g.register(fs)
	var pwStdin bool
	if cmd.password {
		fs.BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of stdin")
	}
	runCmd := cmd.setup(fs)
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		return flagError(err)
	}
	if len(pos) != cmd.nargs {
		return usageErrorf("%s takes %d argument(s), got %d", cmd.name, cmd.nargs, len(pos))
	}
	if c.g.timeout <= 0 {
		return usageErrorf("--timeout must be positive")
	}
	if cmd.password {
		if c.password, err = c.readPassword(pwStdin); err != nil {
			return err
		}
	}
	conn, err := c.g.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	c.admin = adminv1.NewAdminServiceClient(conn)
	return runCmd(ctx, c, pos)
}

// lookup finds the command named by the first two arguments and returns
// it with the arguments after its name.
func lookup(args []string) (command, []string, error) {
	var verbs []string
	for _, cmd := range commands() {
		group, verb, _ := strings.Cut(cmd.name, " ")
		if group != args[0] {
			continue
		}
		if verb == "" { // a command of one word
			return cmd, args[1:], nil
		}
		if len(args) > 1 && args[1] == verb {
			return cmd, args[2:], nil
		}
		verbs = append(verbs, verb)
	}
	switch {
	case len(verbs) == 0:
		return command{}, nil, usageErrorf("unknown command %q", args[0])
	case len(args) == 1:
		return command{}, nil, usageErrorf("%s needs a subcommand: %s", args[0], strings.Join(verbs, ", "))
	default:
		return command{}, nil, usageErrorf("unknown %s subcommand %q (want %s)", args[0], args[1], strings.Join(verbs, ", "))
	}
}

// refusePasswordFlag rejects a password given on the command line, where
// it would be visible to other users and kept in shell history. It never
// repeats the value.
func refusePasswordFlag(args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "password" {
			return usageErrorf("passwords are never accepted as arguments; pipe the password in with --password-stdin")
		}
	}
	return nil
}
