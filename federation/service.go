package federation

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
)

// ServiceConfig is what a Service needs. Self, Store, Trust and Signer
// are required.
type ServiceConfig struct {
	// Self is this node's name.
	Self valise.NodeName
	// Store holds users, keys and received transactions.
	Store storage.Store
	// Trust is the peer list; a peer that is no longer allowed is refused
	// even on a connection opened while it was.
	Trust *Trust
	// Signer signs the key answers.
	Signer *Signer
	// Limits bound what peers send; zero fields take their defaults.
	Limits Limits
	// Delivered, if not nil, is called after a commit that wrote inbox
	// rows, to wake the recipients' streams. It must not block.
	Delivered func([]storage.Delivery)
	// Contact, if not nil, is called with the peer's name after every
	// successful call from it (through UnaryInterceptor), so that the
	// outbound sender for that peer stops backing off. It must not
	// block; Outbound.Contact fits.
	Contact func(valise.NodeName)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives the service's logs; nil discards them.
	Log *slog.Logger
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Service is this node's FederationService: it receives envelopes from
// peers and serves its users' public keys to them, exactly as
// federation.proto specifies. It must be served on the federation
// listener (ServerTLS) with UnaryInterceptor installed. A Service is safe
// for concurrent use.
type Service struct {
	federationv1.UnimplementedFederationServiceServer
	cfg     ServiceConfig
	limits  *limiter
	metrics *serviceMetrics
	log     *slog.Logger
}

// NewService returns a Service for cfg.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Service{
		cfg:     cfg,
		limits:  newLimiter(cfg.Limits, cfg.Now),
		metrics: newServiceMetrics(cfg.Registerer),
		log:     cfg.Log.With("component", "federation.service"),
	}
}

// Register registers the Service with srv, which must also have
// UnaryInterceptor installed.
func (s *Service) Register(srv *grpc.Server) {
	federationv1.RegisterFederationServiceServer(srv, s)
}

// authorize returns the peer that the call's certificate proves, after
// checking that it is origin (when the request carries one) and still an
// allowed peer.
func (s *Service) authorize(ctx context.Context, origin *string) (valise.NodeName, error) {
	peer, err := PeerFromContext(ctx)
	if err != nil {
		return "", status.Error(codes.Unauthenticated, "no verified peer certificate")
	}
	if origin != nil && *origin != string(peer) {
		return "", status.Error(codes.PermissionDenied, "origin is not the node the client certificate proves")
	}
	if !s.cfg.Trust.Allowed(peer) {
		return "", status.Errorf(codes.PermissionDenied, "node %s is not a federation peer of %s (or is blocked)", peer, s.cfg.Self)
	}
	return peer, nil
}

// finish turns err into the status a peer sees. A public error keeps its
// text; anything else is logged here (once) and becomes UNAVAILABLE if
// storage does not answer, INTERNAL otherwise, without detail.
func (s *Service) finish(ctx context.Context, method string, peer valise.NodeName, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := publicStatus(err); ok {
		return st
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if perr := s.cfg.Store.Ping(pctx); perr != nil {
		s.log.WarnContext(ctx, "federation call failed: storage unavailable", "method", method, "peer", peer, "error", err)
		return status.Error(codes.Unavailable, "storage unavailable; retry later")
	}
	s.log.ErrorContext(ctx, "federation call failed", "method", method, "peer", peer, "error", err)
	return status.Error(codes.Internal, "internal error")
}

// invalid is an INVALID_ARGUMENT status.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// GetSigningKeys lists this node's signing keys.
func (s *Service) GetSigningKeys(ctx context.Context, _ *federationv1.GetSigningKeysRequest) (*federationv1.GetSigningKeysResponse, error) {
	if _, err := s.authorize(ctx, nil); err != nil {
		return nil, err
	}
	resp := &federationv1.GetSigningKeysResponse{}
	for _, k := range s.cfg.Signer.Keys() {
		resp.SigningKeys = append(resp.SigningKeys, &federationv1.SigningKey{
			KeyId:      k.KeyID,
			PublicKey:  k.PublicKey,
			ValidFrom:  timestamppb.New(k.ValidFrom),
			ValidUntil: timestamppb.New(k.ValidUntil),
		})
	}
	return resp, nil
}

// localUser parses s as a user of this node.
func (s *Service) localUser(field, v string) (valise.UserID, error) {
	u, err := valise.ParseUserID(v, "")
	if err != nil {
		return valise.UserID{}, invalid("%s must be localpart@node", field)
	}
	if u.Node != s.cfg.Self {
		return valise.UserID{}, invalid("%s is not a user of %s", field, s.cfg.Self)
	}
	return u, nil
}

// QueryDeviceKeys returns a signed list of a local user's device keys;
// unknown and deactivated users get an empty list.
func (s *Service) QueryDeviceKeys(ctx context.Context, req *federationv1.QueryDeviceKeysRequest) (*federationv1.QueryDeviceKeysResponse, error) {
	origin := req.GetOrigin()
	peer, err := s.authorize(ctx, &origin)
	if err != nil {
		return nil, err
	}
	resp, err := s.queryDeviceKeys(ctx, peer, req)
	return resp, s.finish(ctx, "QueryDeviceKeys", peer, err)
}

func (s *Service) queryDeviceKeys(ctx context.Context, peer valise.NodeName, req *federationv1.QueryDeviceKeysRequest) (*federationv1.QueryDeviceKeysResponse, error) {
	user, err := s.localUser("user", req.GetUser())
	if err != nil {
		return nil, err
	}
	if ok, d := s.limits.keys.Allow(string(peer)); !ok {
		return nil, valise.Exhausted(d, "too many key queries from this node")
	}
	// Both lookups run for known and unknown users alike, so the two
	// answers take about the same time.
	u, err := s.cfg.Store.GetUser(ctx, user.Localpart)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	active := err == nil && u.Active
	keys, err := s.cfg.Store.GetDeviceKeys(ctx, user.Localpart)
	if err != nil {
		return nil, err
	}
	list := &federationv1.DeviceKeyList{
		Node:       string(s.cfg.Self),
		User:       user.String(),
		IssuedTime: timestamppb.New(s.cfg.Now()),
	}
	if active {
		for _, k := range keys {
			list.Devices = append(list.Devices, &federationv1.DeviceKeys{
				DeviceId:     string(k.Device),
				IdentityKey:  k.IdentityKey,
				SignedPrekey: preKeyProto(k.SignedPreKey),
			})
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(list)
	if err != nil {
		return nil, err
	}
	return &federationv1.QueryDeviceKeysResponse{
		SignedDeviceKeys: b,
		Signature:        s.cfg.Signer.Sign(contextDeviceKeys, b),
		SigningKeyId:     s.cfg.Signer.KeyID(),
	}, nil
}

func preKeyProto(k valise.PreKey) *federationv1.PreKey {
	return &federationv1.PreKey{KeyId: k.KeyID, PublicKey: k.PublicKey, Signature: k.Signature}
}

// ClaimOneTimeKey hands out one prekey of a local device to a user of the
// calling peer, as a signed ClaimedKey.
func (s *Service) ClaimOneTimeKey(ctx context.Context, req *federationv1.ClaimOneTimeKeyRequest) (*federationv1.ClaimOneTimeKeyResponse, error) {
	origin := req.GetOrigin()
	peer, err := s.authorize(ctx, &origin)
	if err != nil {
		return nil, err
	}
	resp, err := s.claimOneTimeKey(ctx, peer, req)
	return resp, s.finish(ctx, "ClaimOneTimeKey", peer, err)
}

func (s *Service) claimOneTimeKey(ctx context.Context, peer valise.NodeName, req *federationv1.ClaimOneTimeKeyRequest) (*federationv1.ClaimOneTimeKeyResponse, error) {
	requester, err := valise.ParseUserID(req.GetRequesterUser(), "")
	if err != nil {
		return nil, invalid("requester_user must be localpart@node")
	}
	if requester.Node != peer {
		return nil, status.Errorf(codes.PermissionDenied, "requester_user is not a user of %s", peer)
	}
	requesterDevice, err := valise.ParseDeviceID(req.GetRequesterDeviceId())
	if err != nil {
		return nil, invalid("requester_device_id is malformed")
	}
	user, err := s.localUser("user", req.GetUser())
	if err != nil {
		return nil, err
	}
	device, err := valise.ParseDeviceID(req.GetDeviceId())
	if err != nil {
		return nil, invalid("device_id is malformed")
	}
	if ok, d := s.limits.peerClaims.Allow(string(peer)); !ok {
		return nil, valise.Exhausted(d, "too many one-time key claims from this node")
	}
	if ok, d := s.limits.claims.Allow(requester.String() + "|" + string(requesterDevice) + "|" + user.Localpart + "|" + string(device)); !ok {
		return nil, valise.Exhausted(d, "too many one-time key claims by this device for that device")
	}
	notFound := valise.Errorf(valise.KindNotFound, "%s has no device %s with published keys", user, device)
	u, err := s.cfg.Store.GetUser(ctx, user.Localpart)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, notFound
	case err != nil:
		return nil, err
	case !u.Active:
		return nil, notFound
	}
	key, fallback, err := s.cfg.Store.ClaimOneTimeKey(ctx, user.Localpart, device)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, notFound
	case err != nil:
		return nil, err
	}
	claim := &federationv1.ClaimedKey{
		Node:              string(s.cfg.Self),
		User:              user.String(),
		DeviceId:          string(device),
		Key:               preKeyProto(key),
		Fallback:          fallback,
		RequesterUser:     requester.String(),
		RequesterDeviceId: string(requesterDevice),
		IssuedTime:        timestamppb.New(s.cfg.Now()),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(claim)
	if err != nil {
		return nil, err
	}
	return &federationv1.ClaimOneTimeKeyResponse{
		SignedClaim:  b,
		Signature:    s.cfg.Signer.Sign(contextClaimedKey, b),
		SigningKeyId: s.cfg.Signer.KeyID(),
	}, nil
}
