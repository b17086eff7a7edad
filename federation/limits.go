package federation

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/ratelimit"
)

// Limits bounds what peers may send to this node and how often. A zero
// field takes its default (see DefaultLimits).
type Limits struct {
	// MaxBatchEnvelopes bounds the envelopes of one DeliverTransaction.
	// Default 100.
	MaxBatchEnvelopes int
	// MaxBatchBytes bounds the ciphertext of one DeliverTransaction, all
	// envelopes together. Default 4 MiB.
	MaxBatchBytes int
	// MaxCiphertextBytes bounds one envelope's ciphertext; a larger one is
	// ENVELOPE_STATUS_TOO_LARGE. Default 256 KiB.
	MaxCiphertextBytes int
	// DedupWindow is how long received envelope ids and transaction
	// answers are kept; an envelope whose origin time is older is
	// ENVELOPE_STATUS_EXPIRED. It must not be shorter than the peers'
	// outbox time to live (30 days). Default 31 days.
	DedupWindow time.Duration
	// MaxClockSkew is how far ahead of this node's clock an envelope's
	// origin time may be. Default 5 minutes.
	MaxClockSkew time.Duration
	// PeerRate limits every RPC of one peer. Default burst 200, 100/s.
	PeerRate ratelimit.Rate
	// PeerConcurrency bounds one peer's RPCs in flight. Default 16.
	PeerConcurrency int
	// KeyQueryRate limits one peer's QueryDeviceKeys. Default burst 100,
	// 20/s.
	KeyQueryRate ratelimit.Rate
	// ClaimRate limits ClaimOneTimeKey per (requesting device, target
	// device). Default burst 6, then one per 10 minutes.
	ClaimRate ratelimit.Rate
	// PeerClaimRate limits one peer's ClaimOneTimeKey overall. Default
	// burst 100, 10/s.
	PeerClaimRate ratelimit.Rate
}

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxBatchEnvelopes:  100,
		MaxBatchBytes:      4 << 20,
		MaxCiphertextBytes: valise.DefaultMaxCiphertext,
		DedupWindow:        31 * 24 * time.Hour,
		MaxClockSkew:       5 * time.Minute,
		PeerRate:           ratelimit.Rate{Burst: 200, PerSecond: 100},
		PeerConcurrency:    16,
		KeyQueryRate:       ratelimit.Rate{Burst: 100, PerSecond: 20},
		ClaimRate:          ratelimit.Rate{Burst: 6, PerSecond: 1.0 / 600},
		PeerClaimRate:      ratelimit.Rate{Burst: 100, PerSecond: 10},
	}
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setRate := func(v *ratelimit.Rate, def ratelimit.Rate) {
		if v.Burst <= 0 {
			*v = def
		}
	}
	setInt(&l.MaxBatchEnvelopes, d.MaxBatchEnvelopes)
	setInt(&l.MaxBatchBytes, d.MaxBatchBytes)
	setInt(&l.MaxCiphertextBytes, d.MaxCiphertextBytes)
	setDur(&l.DedupWindow, d.DedupWindow)
	setDur(&l.MaxClockSkew, d.MaxClockSkew)
	setRate(&l.PeerRate, d.PeerRate)
	setInt(&l.PeerConcurrency, d.PeerConcurrency)
	setRate(&l.KeyQueryRate, d.KeyQueryRate)
	setRate(&l.ClaimRate, d.ClaimRate)
	setRate(&l.PeerClaimRate, d.PeerClaimRate)
	return l
}

// busyRetry is the RetryInfo delay of a call refused by the concurrency
// limit.
const busyRetry = time.Second

// serviceMethodPrefix is the full-method prefix of FederationService.
const serviceMethodPrefix = "/valise.federation.v1.FederationService/"

// limiter holds the per-peer limits of a Service.
type limiter struct {
	peer, keys, claims, peerClaims *ratelimit.Keyed
	maxInFlight                    int

	mu       sync.Mutex
	inFlight map[valise.NodeName]int
}

func newLimiter(l Limits, now func() time.Time) *limiter {
	return &limiter{
		peer:        ratelimit.NewKeyed(l.PeerRate, now),
		keys:        ratelimit.NewKeyed(l.KeyQueryRate, now),
		claims:      ratelimit.NewKeyed(l.ClaimRate, now),
		peerClaims:  ratelimit.NewKeyed(l.PeerClaimRate, now),
		maxInFlight: l.PeerConcurrency,
		inFlight:    map[valise.NodeName]int{},
	}
}

// enter counts one call of peer in flight, or reports that peer has too
// many.
func (l *limiter) enter(peer valise.NodeName) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[peer] >= l.maxInFlight {
		return false
	}
	l.inFlight[peer]++
	return true
}

func (l *limiter) leave(peer valise.NodeName) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[peer]--; l.inFlight[peer] <= 0 {
		delete(l.inFlight, peer)
	}
}

// UnaryInterceptor returns the interceptor the federation listener's
// gRPC server must install for the Service: for every FederationService
// call it identifies the peer by its certificate (UNAUTHENTICATED
// without one), refuses peers no longer allowed (PERMISSION_DENIED),
// applies the per-peer rate and concurrency limits (RESOURCE_EXHAUSTED
// with RetryInfo), and after a successful call reports the contact
// through ServiceConfig.Contact. Calls to other services pass through
// untouched.
func (s *Service) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, serviceMethodPrefix) {
			return handler(ctx, req)
		}
		method := strings.TrimPrefix(info.FullMethod, serviceMethodPrefix)
		resp, err := s.intercept(ctx, req, handler)
		s.metrics.calls.WithLabelValues(method, status.Code(err).String()).Inc()
		return resp, err
	}
}

func (s *Service) intercept(ctx context.Context, req any, handler grpc.UnaryHandler) (any, error) {
	peer, err := PeerFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "no verified peer certificate")
	}
	// The handshake proved the peer against the peer list of its time;
	// every call checks again against the current one, so that a block, a
	// removal, a replaced CA bundle or an expired certificate applies to
	// open connections too.
	if err := s.cfg.Trust.Recheck(ctx); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "node %s is not, or no longer, a trusted federation peer of %s", peer, s.cfg.Self)
	}
	if ok, d := s.limits.peer.Allow(string(peer)); !ok {
		return nil, exhausted(d, "too many federation calls from this node")
	}
	if !s.limits.enter(peer) {
		return nil, exhausted(busyRetry, "too many concurrent federation calls from this node")
	}
	defer s.limits.leave(peer)
	resp, err := handler(ctx, req)
	if err == nil && s.cfg.Contact != nil {
		s.cfg.Contact(peer)
	}
	return resp, err
}
