package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// MaxPeerCABundle is the largest CA bundle a peer may be added with.
const MaxPeerCABundle = 64 << 10

// peerName parses a peer name an admin gives; it must not be this node's.
func (n *Node) peerName(name string) (valise.NodeName, error) {
	p, err := valise.ParseNodeName(name)
	if err != nil {
		return "", err
	}
	if p == n.cfg.Node {
		return "", valise.Errorf(valise.KindInvalid, "%s is this node's own name", p)
	}
	return p, nil
}

// checkPeerAddress accepts HOST:PORT with a non-empty host of printable
// characters and a port from 1 to 65535.
func checkPeerAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	bad := err != nil || host == "" || len(addr) > 512 || strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r >= 0x7f })
	if !bad {
		p, perr := strconv.ParseUint(port, 10, 16)
		bad = perr != nil || p == 0 || strings.HasPrefix(port, "+")
	}
	if bad {
		return valise.Errorf(valise.KindInvalid, "peer address must be HOST:PORT")
	}
	return nil
}

// CheckPeerCABundle checks a peer's CA bundle as AddPeer does and returns
// it re-encoded as PEM with the number of CA certificates it holds.
func CheckPeerCABundle(bundle []byte) ([]byte, int, error) {
	certs, out, err := parseCABundle(bundle)
	return out, len(certs), err
}

// parseCABundle checks a peer's CA bundle (valise.ParseCABundle) and its
// size, and returns the certificates re-encoded as PEM, without any text
// around the blocks.
func parseCABundle(bundle []byte) ([]*x509.Certificate, []byte, error) {
	if len(bundle) > MaxPeerCABundle {
		return nil, nil, valise.Errorf(valise.KindInvalid, "CA bundle is larger than %d bytes", MaxPeerCABundle)
	}
	certs, err := valise.ParseCABundle(bundle)
	if err != nil {
		return nil, nil, err
	}
	var out bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return certs, out.Bytes(), nil
}

// CAFingerprints returns the SHA-256, lowercase hex, of each certificate
// (DER) of a PEM bundle, skipping anything that is not a certificate.
func CAFingerprints(bundle []byte) []string {
	var fps []string
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return fps
		}
		if block.Type == "CERTIFICATE" {
			sum := sha256.Sum256(block.Bytes)
			fps = append(fps, hex.EncodeToString(sum[:]))
		}
	}
}

// AddPeer lists another node as an unblocked federation peer reached at
// address and certified by a CA of caBundle; actor is recorded in the
// audit log.
func (n *Node) AddPeer(ctx context.Context, actor, name, address string, caBundle []byte) (storage.Peer, error) {
	p, err := n.peerName(name)
	if err != nil {
		return storage.Peer{}, err
	}
	if err := checkPeerAddress(address); err != nil {
		return storage.Peer{}, err
	}
	certs, pemBundle, err := parseCABundle(caBundle)
	if err != nil {
		return storage.Peer{}, err
	}
	now := n.now().UTC()
	rec := storage.Peer{Name: p, Address: address, CABundle: pemBundle, CreatedAt: now, UpdatedAt: now}
	detail := fmt.Sprintf("address=%s cas=%d", address, len(certs))
	if err := n.store.AddPeer(ctx, rec, n.audit(actor, "peer.add", string(p), detail)); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return storage.Peer{}, valise.Errorf(valise.KindAlreadyExists, "peer %s exists already", p)
		}
		return storage.Peer{}, fmt.Errorf("add peer: %w", err)
	}
	n.log.InfoContext(ctx, "peer added", "peer", string(p), "address", address, "actor", actor)
	n.peersChanged(ctx)
	return rec, nil
}

// UpdatePeer changes a peer's address and/or CA bundle (empty keeps the
// current value); actor is recorded in the audit log.
func (n *Node) UpdatePeer(ctx context.Context, actor, name, address string, caBundle []byte) (storage.Peer, error) {
	p, err := n.peerName(name)
	if err != nil {
		return storage.Peer{}, err
	}
	if address == "" && len(caBundle) == 0 {
		return storage.Peer{}, valise.Errorf(valise.KindInvalid, "give a new address, a new CA bundle, or both")
	}
	if address != "" {
		if err := checkPeerAddress(address); err != nil {
			return storage.Peer{}, err
		}
	}
	var certs []*x509.Certificate
	var pemBundle []byte
	if len(caBundle) > 0 {
		if certs, pemBundle, err = parseCABundle(caBundle); err != nil {
			return storage.Peer{}, err
		}
	}
	cur, err := n.store.GetPeer(ctx, p)
	if err != nil {
		return storage.Peer{}, notFound(err, "peer %s not found", p)
	}
	if address != "" {
		cur.Address = address
	}
	if pemBundle != nil {
		cur.CABundle = pemBundle
	}
	cur.UpdatedAt = n.now().UTC()
	detail := fmt.Sprintf("address=%s", cur.Address)
	if certs != nil {
		detail += fmt.Sprintf(" cas=%d", len(certs))
	}
	if err := n.store.UpdatePeer(ctx, cur, n.audit(actor, "peer.update", string(p), detail)); err != nil {
		return storage.Peer{}, notFound(err, "peer %s not found", p)
	}
	n.log.InfoContext(ctx, "peer updated", "peer", string(p), "address", cur.Address, "actor", actor)
	n.peersChanged(ctx)
	return cur, nil
}

// PeerInfo is a peer with the state of this node's deliveries to it.
type PeerInfo struct {
	storage.Peer
	// State is "idle", "delivering", "retrying" or "blocked".
	State    string
	Queue    storage.OutboxStat
	Delivery storage.DeliveryState
}

// ListPeers lists peers after the given name, with their delivery state.
func (n *Node) ListPeers(ctx context.Context, after valise.NodeName, limit int) ([]PeerInfo, error) {
	peers, err := n.store.ListPeers(ctx, after, limit)
	if err != nil || len(peers) == 0 {
		return nil, err
	}
	stats, err := n.store.OutboxStats(ctx)
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	queues := make(map[valise.NodeName]storage.OutboxStat, len(stats))
	for _, s := range stats {
		queues[s.Destination] = s
	}
	out := make([]PeerInfo, len(peers))
	for i, p := range peers {
		st, err := n.store.GetDeliveryState(ctx, p.Name)
		if err != nil {
			return nil, fmt.Errorf("list peers: %w", err)
		}
		info := PeerInfo{Peer: p, Queue: queues[p.Name], Delivery: st}
		switch {
		case p.Blocked:
			info.State = "blocked"
		case info.Queue.Depth == 0:
			info.State = "idle"
		case st.Failures > 0:
			info.State = "retrying"
		default:
			info.State = "delivering"
		}
		out[i] = info
	}
	return out, nil
}

// RetryPeer makes the sender for a peer try again now.
func (n *Node) RetryPeer(ctx context.Context, actor, name string) error {
	p, err := valise.ParseNodeName(name)
	if err != nil {
		return err
	}
	if n.cfg.Remote == nil {
		return valise.Errorf(valise.KindPrecondition, "federation is off on this node")
	}
	if _, err := n.store.GetPeer(ctx, p); err != nil {
		return notFound(err, "peer %s not found", p)
	}
	st, err := n.store.GetDeliveryState(ctx, p)
	if err != nil {
		return fmt.Errorf("retry peer: %w", err)
	}
	st.NextAttempt = time.Time{}
	if err := n.store.SetDeliveryState(ctx, p, st); err != nil {
		return fmt.Errorf("retry peer: %w", err)
	}
	if _, err := n.store.AppendAudit(ctx, *n.audit(actor, "peer.retry", string(p), "")); err != nil {
		return fmt.Errorf("retry peer: %w", err)
	}
	n.cfg.Remote.Retry(p)
	n.log.InfoContext(ctx, "peer retry requested", "peer", string(p), "actor", actor)
	return nil
}

// SetPeerBlocked blocks or unblocks a peer.
func (n *Node) SetPeerBlocked(ctx context.Context, actor, name string, blocked bool) error {
	p, err := valise.ParseNodeName(name)
	if err != nil {
		return err
	}
	action := "peer.unblock"
	if blocked {
		action = "peer.block"
	}
	if err := n.store.SetPeerBlocked(ctx, p, blocked, n.audit(actor, action, string(p), "")); err != nil {
		return notFound(err, "peer %s not found", p)
	}
	n.log.InfoContext(ctx, "peer state changed", "peer", string(p), "blocked", blocked, "actor", actor)
	n.peersChanged(ctx)
	return nil
}

// RemovePeer removes a peer from the list.
func (n *Node) RemovePeer(ctx context.Context, actor, name string) error {
	p, err := valise.ParseNodeName(name)
	if err != nil {
		return err
	}
	if err := n.store.RemovePeer(ctx, p, n.audit(actor, "peer.remove", string(p), "")); err != nil {
		return notFound(err, "peer %s not found", p)
	}
	n.log.InfoContext(ctx, "peer removed", "peer", string(p), "actor", actor)
	n.peersChanged(ctx)
	return nil
}

// peersChanged tells the federation side (Config.PeersChanged) that the
// peer list changed, so blocks and removals apply to the next handshake.
func (n *Node) peersChanged(ctx context.Context) {
	if n.cfg.PeersChanged == nil {
		return
	}
	if err := n.cfg.PeersChanged(ctx); err != nil {
		n.log.WarnContext(ctx, "peer list not reloaded", "err", err.Error())
	}
}
