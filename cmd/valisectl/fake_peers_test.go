package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/valise-im/valise"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// The fake's peer list. Validation is a sketch of the node's: the name is
// parsed, the address split, and every PEM block must be a CERTIFICATE
// (its bytes are not parsed).

// peerName parses a peer name and, if mustExist, finds the peer. Callers
// hold f.mu.
func (f *fakeAdmin) peerName(s string, mustExist bool) (string, error) {
	n, err := valise.ParseNodeName(s)
	if err != nil {
		return "", status.Error(codes.InvalidArgument, err.Error())
	}
	if _, ok := f.peers[string(n)]; mustExist && !ok {
		return "", status.Errorf(codes.NotFound, "peer %s not found", n)
	}
	return string(n), nil
}

func (f *fakeAdmin) AddPeer(_ context.Context, req *adminv1.AddPeerRequest) (*adminv1.AddPeerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["AddPeer"]++
	name, err := f.peerName(req.GetName(), false)
	if err != nil {
		return nil, err
	}
	if name == fakeNode {
		return nil, status.Errorf(codes.InvalidArgument, "%s is this node's own name", name)
	}
	if _, _, err := net.SplitHostPort(req.GetAddress()); err != nil {
		return nil, status.Error(codes.InvalidArgument, "peer address must be HOST:PORT")
	}
	var fps []string
	for rest := req.GetCaBundle(); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, status.Errorf(codes.InvalidArgument, "CA bundle block is a %q", b.Type)
		}
		sum := sha256.Sum256(b.Bytes)
		fps = append(fps, hex.EncodeToString(sum[:]))
	}
	if len(fps) == 0 {
		return nil, status.Error(codes.InvalidArgument, "CA bundle holds no PEM certificate")
	}
	if _, ok := f.peers[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "peer %s exists already", name)
	}
	ts := f.tick()
	p := &adminv1.Peer{Name: name, Address: req.GetAddress(), CaFingerprints: fps, CreatedTime: ts, UpdatedTime: ts}
	f.peers[name] = p
	f.event("peer.add", name, "address="+req.GetAddress())
	return &adminv1.AddPeerResponse{Peer: proto.CloneOf(p)}, nil
}

func (f *fakeAdmin) ListPeers(_ context.Context, req *adminv1.ListPeersRequest) (*adminv1.ListPeersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListPeers"]++
	var all []*adminv1.Peer
	for _, p := range f.peers {
		all = append(all, proto.CloneOf(p))
	}
	peers, next, err := page(all, (*adminv1.Peer).GetName, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &adminv1.ListPeersResponse{Peers: peers, NextPageToken: next}, nil
}

func (f *fakeAdmin) setBlocked(rpc, action, name string, blocked bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[rpc]++
	n, err := f.peerName(name, true)
	if err != nil {
		return err
	}
	f.peers[n].Blocked = blocked
	f.peers[n].UpdatedTime = f.tick()
	f.event(action, n, "")
	return nil
}

func (f *fakeAdmin) BlockPeer(_ context.Context, req *adminv1.BlockPeerRequest) (*adminv1.BlockPeerResponse, error) {
	if err := f.setBlocked("BlockPeer", "peer.block", req.GetName(), true); err != nil {
		return nil, err
	}
	return &adminv1.BlockPeerResponse{}, nil
}

func (f *fakeAdmin) UnblockPeer(_ context.Context, req *adminv1.UnblockPeerRequest) (*adminv1.UnblockPeerResponse, error) {
	if err := f.setBlocked("UnblockPeer", "peer.unblock", req.GetName(), false); err != nil {
		return nil, err
	}
	return &adminv1.UnblockPeerResponse{}, nil
}

func (f *fakeAdmin) RemovePeer(_ context.Context, req *adminv1.RemovePeerRequest) (*adminv1.RemovePeerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["RemovePeer"]++
	n, err := f.peerName(req.GetName(), true)
	if err != nil {
		return nil, err
	}
	delete(f.peers, n)
	f.event("peer.remove", n, "")
	return &adminv1.RemovePeerResponse{}, nil
}

func (f *fakeAdmin) RetryPeer(_ context.Context, req *adminv1.RetryPeerRequest) (*adminv1.RetryPeerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["RetryPeer"]++
	n, err := f.peerName(req.GetName(), true)
	if err != nil {
		return nil, err
	}
	f.event("peer.retry", n, "")
	return &adminv1.RetryPeerResponse{}, nil
}

// peerNames returns the fake's peers, sorted.
func (f *fakeAdmin) peerNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
