package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/valise-im/valise/client"
)

func loginCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	server := fs.String("server", "", "the home node's client listener, HOST:PORT")
	user := fs.String("user", "", "the user, localpart@node")
	ca := fs.String("ca", "", "CA certificates that verify the node (PEM)")
	serverName := fs.String("server-name", "", "name in the node's certificate")
	deviceName := fs.String("device-name", "", "display name of the new device")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	return func(ctx context.Context, c *cli, _ []string) error {
		if *server == "" || *user == "" {
			return usageErrorf("login needs --server HOST:PORT and --user USER")
		}
		cfg, err := c.config()
		if err != nil {
			return err
		}
		cfg.Server, cfg.ServerName = *server, *serverName
		if *ca != "" {
			if cfg.RootCAsPEM, err = os.ReadFile(*ca); err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
		}
		name := *deviceName
		if name == "" {
			name = "valise"
			if host, err := os.Hostname(); err == nil {
				name = "valise on " + host
			}
		}
		password, err := c.readPassword(*pwStdin, *user)
		if err != nil {
			return err
		}
		cl, err := client.Login(ctx, cfg, *user, password, name)
		if err != nil {
			return err
		}
		defer cl.Close()
		fmt.Fprintf(c.stdout, "logged in as %s, device %s\n", cl.User(), cl.DeviceID())
		return nil
	}
}

func sendCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	accept := fs.Bool("accept-changed-keys", false, "send to devices whose identity key changed")
	return func(ctx context.Context, c *cli, args []string) error {
		to := args[0]
		var text []byte
		if len(args) > 1 {
			text = []byte(strings.Join(args[1:], " "))
		} else {
			b, err := io.ReadAll(io.LimitReader(c.stdin, client.MaxText+2))
			if err != nil {
				return fmt.Errorf("reading the message from stdin: %w", err)
			}
			text = trimNewline(b)
		}
		if len(text) == 0 {
			return usageErrorf("send: empty message (give TEXT or pipe it in)")
		}
		cl, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		res, err := cl.Send(ctx, to, text, client.SendOptions{AcceptChangedKeys: *accept})
		for _, w := range res.Warnings {
			c.warn(w)
		}
		var changed *client.ChangedKeysError
		if errors.As(err, &changed) {
			fmt.Fprintf(c.stderr, "WARNING: %s\n", sanitize(errorText(err)))
			return errors.New("nothing was sent; check with 'valise fingerprint' and 'valise verify', or send with --accept-changed-keys")
		}
		if err != nil {
			return err
		}
		theirs, mine := 0, 0
		for _, d := range res.Devices {
			if strings.HasPrefix(d, cl.User()+"/") {
				mine++
			} else {
				theirs++
			}
		}
		switch {
		case theirs == 0: // a note to self
			fmt.Fprintf(c.stdout, "sent to %d of your other device(s); message %s\n", mine, res.MessageID)
		default:
			fmt.Fprintf(c.stdout, "sent to %d device(s) of %s and %d of your other device(s); message %s\n", theirs, to, mine, res.MessageID)
		}
		return nil
	}
}

// trimNewline drops one trailing line ending.
func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// jsonMessage is one line of "recv --json" and "history --json".
type jsonMessage struct {
	ID       string    `json:"id"`
	From     string    `json:"from"`
	Device   string    `json:"device"`
	To       string    `json:"to"`
	Time     time.Time `json:"time"`
	Text     string    `json:"text"`
	Received time.Time `json:"received,omitzero"`
}

func recvCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	follow := fs.Bool("follow", false, "keep receiving until interrupted")
	timeout := fs.Duration("timeout", 0, "stop after this long")
	asJSON := fs.Bool("json", false, "print JSON lines")
	return func(ctx context.Context, c *cli, _ []string) error {
		if *timeout < 0 {
			return usageErrorf("--timeout must not be negative")
		}
		cl, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		rctx := ctx
		if *timeout > 0 {
			var cancel context.CancelFunc
			rctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
		p := printer{w: c.stdout, json: *asJSON, self: cl.User()}
		err = cl.Receive(rctx, client.ReceiveOptions{Follow: *follow, OnWarning: c.warn}, p.print)
		if err != nil && rctx.Err() != nil {
			// --timeout ran out, or the user interrupted --follow: a normal end.
			return nil
		}
		if errors.Is(err, client.ErrReceiving) {
			return errors.New("another 'valise recv' is running with this state directory")
		}
		return err
	}
}

func historyCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	asJSON := fs.Bool("json", false, "print JSON lines")
	return func(ctx context.Context, c *cli, args []string) error {
		// The history is local: show it even when the node is unreachable,
		// and only note that the keys could not be topped up.
		cl, err := c.openWith(ctx, true)
		if err != nil {
			return err
		}
		defer cl.Close()
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cl.Maintain(mctx); err != nil {
			fmt.Fprintf(c.stderr, "valise: note: could not top up the device's keys on the node: %s\n", errorText(err))
		}
		cancel()
		user := ""
		if len(args) == 1 {
			user = args[0]
		}
		msgs, err := cl.History(user)
		if err != nil {
			return err
		}
		p := printer{w: c.stdout, json: *asJSON, self: cl.User(), history: true}
		for _, m := range msgs {
			if err := p.print(m); err != nil {
				return err
			}
		}
		return nil
	}
}

func devicesCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		cl, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		user := ""
		if len(args) == 1 {
			user = args[0]
		}
		devs, err := cl.Devices(ctx, user)
		if err != nil {
			return err
		}
		if len(devs) == 0 {
			fmt.Fprintln(c.stdout, "no devices with keys")
			return nil
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tTRUST\tIDENTITY KEY\tNAME")
		for _, d := range devs {
			trust := d.Trust.String()
			if !d.HasKeys {
				trust = "no keys"
			}
			name := sanitize(d.Name)
			if d.Current {
				name += " (this device)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sanitize(d.ID), trust, d.IdentityKey, strings.TrimSpace(name))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, d := range devs {
			if d.Trust == client.TrustChanged {
				fmt.Fprintf(c.stderr, "WARNING: the identity key of device %s CHANGED since it was first seen; compare safety numbers before trusting it\n", sanitize(d.ID))
			}
		}
		return nil
	}
}

func fingerprintCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		cl, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		fp, err := cl.Fingerprint(ctx, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, fp)
		return nil
	}
}

func verifyCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		cl, err := c.open(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		err = cl.Verify(ctx, args[0], strings.Join(args[1:], " "))
		if errors.Is(err, client.ErrFingerprintMismatch) {
			fmt.Fprintf(c.stderr, "WARNING: the safety number does not match %s's current devices; nothing was marked verified\n", args[0])
			return errors.New("fingerprint mismatch")
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "verified the current devices of %s\n", args[0])
		return nil
	}
}

func logoutCmd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, _ []string) error {
		// No point topping up keys about to be revoked.
		cl, err := c.openWith(ctx, true)
		if err != nil {
			return err
		}
		defer cl.Close()
		device := cl.DeviceID()
		if err := cl.Logout(ctx); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "logged out: device %s revoked on the node, its keys deleted here\n", device)
		return nil
	}
}
