package server

import (
	"context"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	"github.com/valise-im/valise/storage"
)

func peerProto(p storage.Peer) *adminv1.Peer {
	return &adminv1.Peer{
		Name:           string(p.Name),
		Address:        p.Address,
		Blocked:        p.Blocked,
		CaFingerprints: CAFingerprints(p.CABundle),
		CreatedTime:    timestamppb.New(p.CreatedAt),
		UpdatedTime:    timestamppb.New(p.UpdatedAt),
	}
}

// timeProto converts t, leaving the zero time unset.
func timeProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func peerInfoProto(p PeerInfo) *adminv1.Peer {
	pb := peerProto(p.Peer)
	pb.Delivery = &adminv1.PeerDelivery{
		State:               p.State,
		QueueDepth:          p.Queue.Depth,
		OldestQueuedTime:    timeProto(p.Queue.Oldest),
		LastSuccessTime:     timeProto(p.Delivery.LastSuccess),
		LastError:           p.Delivery.LastError,
		LastErrorTime:       timeProto(p.Delivery.LastErrorAt),
		NextAttemptTime:     timeProto(p.Delivery.NextAttempt),
		ConsecutiveFailures: int32(min(p.Delivery.Failures, math.MaxInt32)),
	}
	if p.Queue.Depth == 0 {
		pb.Delivery.OldestQueuedTime = nil
	}
	return pb
}

func (s *adminService) AddPeer(ctx context.Context, req *adminv1.AddPeerRequest) (*adminv1.AddPeerResponse, error) {
	p, err := s.n.AddPeer(ctx, actorFrom(ctx), req.GetName(), req.GetAddress(), req.GetCaBundle())
	if err != nil {
		return nil, err
	}
	return &adminv1.AddPeerResponse{Peer: peerProto(p)}, nil
}

func (s *adminService) ListPeers(ctx context.Context, req *adminv1.ListPeersRequest) (*adminv1.ListPeersResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken("peers", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	peers, err := s.n.ListPeers(ctx, valise.NodeName(after), size)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListPeersResponse{}
	for _, p := range peers {
		resp.Peers = append(resp.Peers, peerInfoProto(p))
	}
	if len(peers) > 0 {
		resp.NextPageToken = nextToken("peers", len(peers), size, string(peers[len(peers)-1].Name))
	}
	return resp, nil
}

func (s *adminService) BlockPeer(ctx context.Context, req *adminv1.BlockPeerRequest) (*adminv1.BlockPeerResponse, error) {
	if err := s.n.SetPeerBlocked(ctx, actorFrom(ctx), req.GetName(), true); err != nil {
		return nil, err
	}
	return &adminv1.BlockPeerResponse{}, nil
}

func (s *adminService) UnblockPeer(ctx context.Context, req *adminv1.UnblockPeerRequest) (*adminv1.UnblockPeerResponse, error) {
	if err := s.n.SetPeerBlocked(ctx, actorFrom(ctx), req.GetName(), false); err != nil {
		return nil, err
	}
	return &adminv1.UnblockPeerResponse{}, nil
}

func (s *adminService) UpdatePeer(ctx context.Context, req *adminv1.UpdatePeerRequest) (*adminv1.UpdatePeerResponse, error) {
	p, err := s.n.UpdatePeer(ctx, actorFrom(ctx), req.GetName(), req.GetAddress(), req.GetCaBundle())
	if err != nil {
		return nil, err
	}
	return &adminv1.UpdatePeerResponse{Peer: peerProto(p)}, nil
}

func (s *adminService) RetryPeer(ctx context.Context, req *adminv1.RetryPeerRequest) (*adminv1.RetryPeerResponse, error) {
	if err := s.n.RetryPeer(ctx, actorFrom(ctx), req.GetName()); err != nil {
		return nil, err
	}
	return &adminv1.RetryPeerResponse{}, nil
}

func (s *adminService) RemovePeer(ctx context.Context, req *adminv1.RemovePeerRequest) (*adminv1.RemovePeerResponse, error) {
	if err := s.n.RemovePeer(ctx, actorFrom(ctx), req.GetName()); err != nil {
		return nil, err
	}
	return &adminv1.RemovePeerResponse{}, nil
}
