package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/server"
	"github.com/valise-im/valise/storage"
)

// syncConfigPeers brings the peer list in line with federation.peers: a
// declared peer that is missing is added, one listed with another address
// or CA bundle is updated; a block set by an admin stays, and peers
// listed only through valisectl are left alone. Every change is audited
// with the actor "config".
func syncConfigPeers(ctx context.Context, dir string, cfg config.Config, store storage.Store, log *slog.Logger) error {
	for i, p := range cfg.Federation.Peers {
		path := fmt.Sprintf("federation.peers[%d]", i)
		name, err := valise.ParseNodeName(p.Name)
		if err != nil {
			return fmt.Errorf("%s.name: %w", path, err)
		}
		raw, err := os.ReadFile(config.Path(dir, p.CABundleFile))
		if err != nil {
			return fmt.Errorf("%s.ca_bundle_file: %w", path, err)
		}
		bundle, n, err := server.CheckPeerCABundle(raw)
		if err != nil {
			return fmt.Errorf("%s.ca_bundle_file: %w", path, err)
		}
		now := time.Now().UTC()
		audit := &storage.AuditRecord{Time: now, Actor: "config", Target: string(name),
			Detail: fmt.Sprintf("address=%s cas=%d", p.Address, n)}
		old, err := store.GetPeer(ctx, name)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			audit.Action = "peer.add"
			err = store.AddPeer(ctx, storage.Peer{Name: name, Address: p.Address, CABundle: bundle, CreatedAt: now, UpdatedAt: now}, audit)
			if err == nil {
				log.InfoContext(ctx, "peer added from the config file", "peer", string(name), "address", p.Address)
			}
		case err != nil:
		case old.Address != p.Address || !bytes.Equal(old.CABundle, bundle):
			audit.Action = "peer.update"
			old.Address, old.CABundle, old.UpdatedAt = p.Address, bundle, now
			err = store.UpdatePeer(ctx, old, audit)
			if err == nil {
				log.InfoContext(ctx, "peer updated from the config file", "peer", string(name), "address", p.Address)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}
