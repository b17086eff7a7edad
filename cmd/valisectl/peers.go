package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// maxCABundleFile is the largest --ca-bundle file read; the node refuses
// bundles over 64 KiB itself.
const maxCABundleFile = 1 << 20

func peerAdd(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var address, caFile string
	fs.StringVar(&address, "address", "", "the peer's federation endpoint, HOST:PORT")
	fs.StringVar(&caFile, "ca-bundle", "", "PEM file of the CA certificates trusted for the peer's name (- reads standard input)")
	return func(ctx context.Context, c *cli, args []string) error {
		if address == "" {
			return usageErrorf("peer add: --address is required")
		}
		if caFile == "" {
			return usageErrorf("peer add: --ca-bundle is required")
		}
		bundle, err := c.readCABundle(caFile)
		if err != nil {
			return err
		}
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.AddPeerResponse, error) {
			return c.admin.AddPeer(ctx, &adminv1.AddPeerRequest{Name: args[0], Address: address, CaBundle: bundle})
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, resp)
		}
		return printPeer(c, "added", resp.GetPeer())
	}
}

// printPeer prints a peer just added or updated, with its CA fingerprints.
func printPeer(c *cli, verb string, p *adminv1.Peer) error {
	if _, err := fmt.Fprintf(c.stdout, "%s peer %s at %s\n", verb, cell(p.GetName()), cell(p.GetAddress())); err != nil {
		return err
	}
	for _, fp := range p.GetCaFingerprints() {
		if _, err := fmt.Fprintf(c.stdout, "  trusted CA sha256 %s\n", cell(fp)); err != nil {
			return err
		}
	}
	return nil
}

// readCABundle reads a --ca-bundle: the named file, or standard input for
// "-" (for a valisectl that cannot read the peer's CA file, e.g. inside a
// container: `kubectl exec -i … valisectl peer add … --ca-bundle - < ca.pem`).
func (c *cli) readCABundle(name string) ([]byte, error) {
	if name == "-" {
		return readLimited(c.stdin, "standard input", maxCABundleFile)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, name, maxCABundleFile)
}

// readLimited reads r to its end, refusing more than limit bytes.
func readLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

func peerList(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var p pageFlags
	p.register(fs)
	return func(ctx context.Context, c *cli, _ []string) error {
		peers, next, err := collect(ctx, c, p, func(ctx context.Context, size int32, token string) ([]*adminv1.Peer, string, error) {
			resp, err := c.admin.ListPeers(ctx, &adminv1.ListPeersRequest{PageSize: size, PageToken: token})
			return resp.GetPeers(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, &adminv1.ListPeersResponse{Peers: peers, NextPageToken: next})
		}
		t := newTable(c.stdout, "PEER", "ADDRESS", "STATE", "QUEUED", "OLDEST", "LAST SUCCESS", "NEXT RETRY", "LAST ERROR", "CA SHA-256")
		now := time.Now()
		for _, p := range peers {
			d := p.GetDelivery()
			state := d.GetState()
			if d == nil { // a node that does not report deliveries
				state = "listed"
				if p.GetBlocked() {
					state = "blocked"
				}
			}
			oldest := "-"
			if ts := d.GetOldestQueuedTime(); ts != nil {
				oldest = now.Sub(ts.AsTime()).Truncate(time.Second).String()
			}
			lastErr := "-"
			if e := d.GetLastError(); e != "" {
				lastErr = fmt.Sprintf("%s (%d in a row, %s)", e, d.GetConsecutiveFailures(), fmtTime(d.GetLastErrorTime()))
			}
			t.row(p.GetName(), p.GetAddress(), state, fmt.Sprint(d.GetQueueDepth()), oldest,
				fmtTime(d.GetLastSuccessTime()), fmtTime(d.GetNextAttemptTime()), lastErr, strings.Join(p.GetCaFingerprints(), ","))
		}
		err = t.flush()
		c.moreHint(next)
		return err
	}
}

func peerBlock(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.BlockPeerResponse, error) {
			return c.admin.BlockPeer(ctx, &adminv1.BlockPeerRequest{Name: args[0]})
		})
		return c.done(resp, err, "blocked peer %s", args[0])
	}
}

func peerUnblock(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.UnblockPeerResponse, error) {
			return c.admin.UnblockPeer(ctx, &adminv1.UnblockPeerRequest{Name: args[0]})
		})
		return c.done(resp, err, "unblocked peer %s", args[0])
	}
}

func peerUpdate(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var address, caFile string
	fs.StringVar(&address, "address", "", "the peer's new federation endpoint, HOST:PORT")
	fs.StringVar(&caFile, "ca-bundle", "", "PEM file of the CA certificates now trusted for the peer's name, replacing the current bundle (- reads standard input)")
	return func(ctx context.Context, c *cli, args []string) error {
		if address == "" && caFile == "" {
			return usageErrorf("peer update: give --address, --ca-bundle or both")
		}
		var bundle []byte
		if caFile != "" {
			var err error
			if bundle, err = c.readCABundle(caFile); err != nil {
				return err
			}
		}
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.UpdatePeerResponse, error) {
			return c.admin.UpdatePeer(ctx, &adminv1.UpdatePeerRequest{Name: args[0], Address: address, CaBundle: bundle})
		})
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, resp)
		}
		return printPeer(c, "updated", resp.GetPeer())
	}
}

func peerRetry(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.RetryPeerResponse, error) {
			return c.admin.RetryPeer(ctx, &adminv1.RetryPeerRequest{Name: args[0]})
		})
		return c.done(resp, err, "retrying deliveries to peer %s now", args[0])
	}
}

func peerRemove(*flag.FlagSet) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		resp, err := call(ctx, c, func(ctx context.Context) (*adminv1.RemovePeerResponse, error) {
			return c.admin.RemovePeer(ctx, &adminv1.RemovePeerRequest{Name: args[0]})
		})
		return c.done(resp, err, "removed peer %s", args[0])
	}
}
