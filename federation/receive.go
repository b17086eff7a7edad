package federation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
)

// maxTransactionIDLen bounds a transaction id, in bytes.
const maxTransactionIDLen = 128

// boundTransactionID is the id under which a transaction's answer is
// stored: the origin's id followed by a digest of its envelope ids, in
// order. A retry of the same envelopes under the same id gets the first
// answer; an origin that reuses an id for other envelopes (which the
// protocol forbids) is judged afresh, never answered with another
// transaction's verdicts (envelope ids accepted before are then
// DUPLICATE, so nothing is stored twice either way).
func boundTransactionID(req *federationv1.DeliverTransactionRequest) string {
	h := sha256.New()
	for _, e := range req.GetEnvelopes() {
		h.Write([]byte(e.GetEnvelopeId()))
		h.Write([]byte{0})
	}
	return req.GetTransactionId() + "\x00" + hex.EncodeToString(h.Sum(nil)[:16])
}

// DeliverTransaction receives a batch of envelopes from a peer. The
// whole-transaction checks run in the order federation.proto gives,
// before anything is stored; then each envelope is judged on its own and
// the store commits the accepted ones and the answer in one transaction.
func (s *Service) DeliverTransaction(ctx context.Context, req *federationv1.DeliverTransactionRequest) (*federationv1.DeliverTransactionResponse, error) {
	origin := req.GetOrigin()
	peer, err := s.authorize(ctx, &origin)
	if err != nil {
		return nil, err
	}
	resp, err := s.deliverTransaction(ctx, peer, req)
	return resp, s.finish(ctx, "DeliverTransaction", peer, err)
}

func (s *Service) deliverTransaction(ctx context.Context, origin valise.NodeName, req *federationv1.DeliverTransactionRequest) (*federationv1.DeliverTransactionResponse, error) {
	if err := s.checkTransaction(origin, req); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	tx := &storage.InboundTransaction{
		Origin:    origin,
		ID:        boundTransactionID(req),
		Received:  now,
		Envelopes: make([]storage.InboundEnvelope, len(req.GetEnvelopes())),
	}
	for i, e := range req.GetEnvelopes() {
		tx.Envelopes[i] = s.judge(e, now)
	}
	res, err := s.cfg.Store.ReceiveTransaction(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("federation: receive transaction from %s: %w", origin, err)
	}
	// The stored id is bound to the envelope ids (boundTransactionID), so
	// a replay is always of these very envelopes.
	if len(res.Statuses) != len(tx.Envelopes) {
		return nil, fmt.Errorf("federation: receive transaction from %s: store answered %d verdicts for %d envelopes",
			origin, len(res.Statuses), len(tx.Envelopes))
	}
	if !res.Replayed && len(res.Deliveries) > 0 && s.cfg.Delivered != nil {
		s.cfg.Delivered(res.Deliveries)
	}
	result := "committed"
	if res.Replayed {
		result = "replayed"
	}
	s.metrics.transactions.WithLabelValues(string(origin), result).Inc()
	resp := &federationv1.DeliverTransactionResponse{Results: make([]*federationv1.EnvelopeResult, len(res.Statuses))}
	for i, st := range res.Statuses {
		resp.Results[i] = &federationv1.EnvelopeResult{
			Status:    federationv1.EnvelopeStatus(st),
			Permanent: permanentStatus(st),
		}
		if i < len(req.GetEnvelopes()) {
			resp.Results[i].EnvelopeId = req.GetEnvelopes()[i].GetEnvelopeId()
		}
		if !res.Replayed {
			s.metrics.inbound.WithLabelValues(string(origin), statusLabel(st)).Inc()
		}
	}
	return resp, nil
}

// checkTransaction applies the whole-transaction checks.
func (s *Service) checkTransaction(origin valise.NodeName, req *federationv1.DeliverTransactionRequest) error {
	lim := s.cfg.Limits
	if req.GetDestination() != string(s.cfg.Self) {
		return invalid("destination is not this node (%s)", s.cfg.Self)
	}
	if id := req.GetTransactionId(); id == "" || len(id) > maxTransactionIDLen {
		return invalid("transaction_id must be 1 to %d bytes", maxTransactionIDLen)
	}
	for _, e := range req.GetEnvelopes() {
		u, err := valise.ParseUserID(e.GetSenderUser(), "")
		if err != nil || u.Node != origin {
			return status.Errorf(codes.PermissionDenied, "every sender_user must be a user of %s; nothing was stored", origin)
		}
	}
	n := len(req.GetEnvelopes())
	if n == 0 {
		return invalid("a transaction needs at least one envelope")
	}
	if n > lim.MaxBatchEnvelopes {
		return invalid("a transaction holds at most %d envelopes", lim.MaxBatchEnvelopes)
	}
	total := 0
	seen := make(map[string]struct{}, n)
	for _, e := range req.GetEnvelopes() {
		total += len(e.GetCiphertext())
		if total > lim.MaxBatchBytes {
			return invalid("a transaction holds at most %d bytes of ciphertext", lim.MaxBatchBytes)
		}
		if _, dup := seen[e.GetEnvelopeId()]; dup {
			return invalid("envelope_id repeated within the transaction")
		}
		seen[e.GetEnvelopeId()] = struct{}{}
	}
	return nil
}

// judge converts one envelope for the store, with the verdict the node
// can reach without it (InboundPending when the store must judge).
func (s *Service) judge(e *federationv1.FederatedEnvelope, now time.Time) storage.InboundEnvelope {
	lim := s.cfg.Limits
	in := storage.InboundEnvelope{
		ID:         valise.EnvelopeID(e.GetEnvelopeId()),
		Ciphertext: e.GetCiphertext(),
		Status:     storage.InboundInvalid,
	}
	in.Sender, _ = valise.ParseUserID(e.GetSenderUser(), "") // checked by checkTransaction
	if !validUUIDv7(e.GetEnvelopeId()) {
		return in
	}
	var err error
	if in.SenderDevice, err = valise.ParseDeviceID(e.GetSenderDeviceId()); err != nil {
		return in
	}
	if in.RecipientDevice, err = valise.ParseDeviceID(e.GetRecipientDeviceId()); err != nil {
		return in
	}
	recipient, err := valise.ParseUserID(e.GetRecipientUser(), "")
	if err != nil || recipient.Node != s.cfg.Self {
		return in
	}
	in.Recipient = recipient.Localpart
	if len(e.GetCiphertext()) == 0 {
		return in
	}
	origin, ok := timeOf(e.GetOriginServerTime())
	if !ok {
		return in
	}
	expire, ok := timeOf(e.GetExpireTime())
	if !ok || !expire.After(origin) || origin.After(now.Add(lim.MaxClockSkew)) {
		return in
	}
	in.OriginTime = origin
	switch {
	case len(e.GetCiphertext()) > lim.MaxCiphertextBytes:
		in.Status = storage.InboundTooLarge
	case !expire.After(now) || origin.Before(now.Add(-lim.DedupWindow)):
		in.Status = storage.InboundExpired
	default:
		in.Status = storage.InboundPending
	}
	return in
}

// timeOf returns a set, valid timestamp as a UTC time.
func timeOf(ts *timestamppb.Timestamp) (time.Time, bool) {
	if ts == nil || ts.CheckValid() != nil {
		return time.Time{}, false
	}
	return ts.AsTime(), true
}

// permanentStatus reports whether an envelope given st must not be
// retried.
func permanentStatus(st storage.InboundStatus) bool {
	switch st {
	case storage.InboundUnknownRecipient, storage.InboundRecipientDeactivated,
		storage.InboundTooLarge, storage.InboundInvalid, storage.InboundExpired:
		return true
	}
	return false
}

// statusLabel is st's metric label.
func statusLabel(st storage.InboundStatus) string {
	switch st {
	case storage.InboundAccepted:
		return "accepted"
	case storage.InboundDuplicate:
		return "duplicate"
	case storage.InboundUnknownRecipient:
		return "unknown_recipient"
	case storage.InboundRecipientDeactivated:
		return "recipient_deactivated"
	case storage.InboundTooLarge:
		return "too_large"
	case storage.InboundInvalid:
		return "invalid"
	case storage.InboundExpired:
		return "expired"
	}
	return "other"
}

// validUUIDv7 reports whether s is a UUIDv7 in canonical text form:
// lowercase hex in 8-4-4-4-12 groups, version 7, RFC 9562 variant.
func validUUIDv7(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	if s[14] != '7' {
		return false
	}
	switch s[19] {
	case '8', '9', 'a', 'b':
		return true
	}
	return false
}
