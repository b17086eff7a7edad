package federation

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
)

// errLostLease means another owner holds the destination's outbox lease.
var errLostLease = errors.New("federation: outbox lease held by another owner")

// holdInterval is how often a sender checks whether a blocked peer was
// unblocked (an admin's retry checks at once).
const holdInterval = 30 * time.Second

// stopTimeout bounds the store writes of a stopping sender.
const stopTimeout = 5 * time.Second

// Kinds of backoff reset.
const (
	resetContact = iota // the peer called us: retry now, but honour its RetryInfo
	resetAdmin          // the admin asked: retry now
)

// sender delivers one destination's outbox. Its fields below wake and
// the atomics are owned by its run goroutine.
type sender struct {
	o    *Outbound
	dest valise.NodeName
	log  *slog.Logger
	// wake holds a pending wake-up: new envelopes or a reset.
	wake chan struct{}
	// resetAdmin and resetContact are pending backoff resets.
	resetAdmin, resetContact atomic.Bool
	// backingOff is true while the sender waits for NextAttempt.
	backingOff atomic.Bool

	state        storage.DeliveryState
	dirty        bool      // state has changes not written yet
	written      time.Time // when state was last written
	batch        int       // the current batch size limit
	leaseUntil   time.Time // zero when the lease is not held
	limitedUntil time.Time // the peer's RetryInfo asks to wait until then
	// finishing is the answer of the last transaction being recorded
	// (FinishOutbox) while the next one is read and sent, or nil.
	finishing *finishing
}

// finishing is a FinishOutbox running beside the sender: the answered
// batch's Seqs, and its error once done is closed.
type finishing struct {
	seqs []int64
	done chan struct{}
	err  error
}

func newSender(o *Outbound, dest valise.NodeName) *sender {
	return &sender{
		o: o, dest: dest,
		log:   o.log.With("peer", string(dest)),
		wake:  make(chan struct{}, 1),
		batch: o.cfg.BatchEnvelopes,
	}
}

// poke wakes the sender, resetting its backoff as kind says (or not, for
// a negative kind).
func (s *sender) poke(kind int) {
	switch kind {
	case resetAdmin:
		s.resetAdmin.Store(true)
	case resetContact:
		s.resetContact.Store(true)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sender) now() time.Time { return s.o.cfg.Now() }

// run works the queue until it is empty, the lease is someone else's, or
// ctx is done.
func (s *sender) run(ctx context.Context) {
	defer s.o.wg.Done()
	defer s.stop(ctx)
	st, err := s.o.cfg.Store.GetDeliveryState(ctx, s.dest)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "reading delivery state failed", "error", err)
		}
		s.o.retire(s, true)
		return
	}
	s.state = st
	s.written = s.now()
	for ctx.Err() == nil {
		// backingOff is set before the reset check, so that a contact
		// is either seen by the check or pokes the sleep.
		s.backingOff.Store(true)
		s.applyReset(ctx)
		if wait := s.state.NextAttempt.Sub(s.now()); wait > 0 {
			// Re-read the stored state now and then (every 5 polls, 10 s
			// by default), to see a `peer retry` made through another
			// replica.
			s.sleep(ctx, min(wait, 5*s.o.cfg.Poll))
			s.recheck(ctx)
			continue
		}
		s.backingOff.Store(false)
		more, err := s.step(ctx)
		if err != nil {
			s.finished(ctx) // a failed step may leave a recording running
		}
		// A step that found nothing more to do waited for any recording.
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errLostLease):
			s.leaseUntil = time.Time{}
			s.o.retire(s, true)
			return
		case err != nil:
			s.log.WarnContext(ctx, "outbox store failed", "error", err)
			s.sleep(ctx, s.o.cfg.Poll)
		case !more:
			s.flush(ctx)
			s.release(ctx)
			if s.o.retire(s, false) {
				return
			}
		}
	}
	s.o.retire(s, true)
}

// recheck adopts an earlier NextAttempt from the stored delivery state
// (an admin's retry through another replica clears it).
func (s *sender) recheck(ctx context.Context) {
	st, err := s.o.cfg.Store.GetDeliveryState(ctx, s.dest)
	if err != nil || !st.NextAttempt.Before(s.state.NextAttempt) || s.dirty {
		return
	}
	s.state.NextAttempt, s.state.Failures = st.NextAttempt, st.Failures
}

// sleep waits d, or until ctx is done or a reset is asked for.
func (s *sender) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-s.wake:
			if s.resetAdmin.Load() || s.resetContact.Load() {
				// Keep the wake for retire: the queue must be read again.
				s.poke(-1)
				return
			}
		}
	}
}

// applyReset applies a pending backoff reset: from the admin (Retry), a
// call from the peer (Contact), or a contact recorded after the last
// error when the sender started.
func (s *sender) applyReset(ctx context.Context) {
	admin := s.resetAdmin.Swap(false)
	contact := s.resetContact.Swap(false)
	if !admin && !contact && !s.state.NextAttempt.IsZero() && s.o.contactedAfter(s.dest, s.state.LastErrorAt) {
		contact = true
	}
	if !admin && !contact {
		return
	}
	var next time.Time
	if admin {
		s.limitedUntil = time.Time{}
	} else if s.limitedUntil.After(s.now()) {
		next = s.limitedUntil
	}
	s.o.pool.resetBackoff(s.dest)
	changed := s.state.Failures != 0 || !s.state.NextAttempt.Equal(next)
	s.state.Failures = 0
	s.state.NextAttempt = next
	if changed || admin {
		s.dirty = true
		// Only the lease holder writes the shared state; a replica that
		// does not hold it keeps the reset in memory (an admin's retry is
		// stored by the server itself).
		if !s.leaseUntil.After(s.now()) {
			return
		}
		if err := s.writeState(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "writing delivery state failed", "error", err)
		}
	}
}

// step renews the lease and handles one batch. It reports whether there
// may be more to do.
func (s *sender) step(ctx context.Context) (bool, error) {
	now := s.now()
	// The lease is renewed once half of it is spent, not before every
	// batch: that saves a durable write per transaction on a busy queue.
	// FinishOutbox checks it anyway, and a call never outlives it.
	if s.leaseUntil.Sub(now) < s.o.cfg.LeaseTTL/2 {
		ok, err := s.o.cfg.Store.AcquireOutboxLease(ctx, s.dest, s.o.cfg.Owner, now, now.Add(s.o.cfg.LeaseTTL))
		if err != nil {
			return false, fmt.Errorf("acquire lease: %w", err)
		}
		if !ok {
			return false, errLostLease
		}
		s.leaseUntil = now.Add(s.o.cfg.LeaseTTL)
	}
	peer, err := s.o.cfg.Store.GetPeer(ctx, s.dest)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return s.deadLetterQueue(ctx, valise.FailureNotPeer)
	case err != nil:
		return false, fmt.Errorf("get peer: %w", err)
	}
	// While the last answer is being recorded, the next batch is what
	// follows it: the same as what a read after the recording returns.
	var skip []int64
	if s.finishing != nil {
		skip = s.finishing.seqs
	}
	envs, err := s.o.cfg.Store.ReadOutbox(ctx, s.dest, s.batch, s.o.cfg.BatchBytes, skip)
	if err != nil {
		return false, fmt.Errorf("read outbox: %w", err)
	}
	if len(envs) == 0 {
		return false, s.finished(ctx)
	}
	// Expired envelopes are given up first, also while the peer is
	// blocked: the time to live holds whatever the peer's state.
	var expired []storage.OutboxOutcome
	for _, e := range envs {
		if !e.ExpireTime.After(now) {
			expired = append(expired, storage.OutboxOutcome{Seq: e.Seq, DeadLetter: valise.FailureExpired})
		}
	}
	if len(expired) > 0 || peer.Blocked {
		// Off the fast path: the answer in flight is recorded first.
		if err := s.finished(ctx); err != nil {
			return false, err
		}
	}
	if len(expired) > 0 {
		return true, s.finish(ctx, expired)
	}
	if peer.Blocked {
		s.state.LastError = "peer is blocked by this node's admin; its queue is held"
		s.state.LastErrorAt = now
		s.state.NextAttempt = now.Add(min(holdInterval, s.o.cfg.BackoffMax))
		s.dirty = true
		return true, s.writeState(ctx)
	}
	return true, s.send(ctx, envs)
}

// deadLetterQueue gives up one batch of the queue for reason.
func (s *sender) deadLetterQueue(ctx context.Context, reason valise.FailureReason) (bool, error) {
	if err := s.finished(ctx); err != nil {
		return false, err
	}
	envs, err := s.o.cfg.Store.ReadOutbox(ctx, s.dest, s.o.cfg.BatchEnvelopes, s.o.cfg.BatchBytes, nil)
	if err != nil || len(envs) == 0 {
		return false, err
	}
	out := make([]storage.OutboxOutcome, len(envs))
	for i, e := range envs {
		out[i] = storage.OutboxOutcome{Seq: e.Seq, DeadLetter: reason}
	}
	s.log.InfoContext(ctx, "giving up queued envelopes", "reason", string(reason), "envelopes", len(envs))
	return true, s.finish(ctx, out)
}

// finish records outcomes and wakes the devices told of dead letters.
func (s *sender) finish(ctx context.Context, outcomes []storage.OutboxOutcome) error {
	notices, err := s.o.cfg.Store.FinishOutbox(ctx, s.dest, s.o.cfg.Owner, s.now(), outcomes)
	if errors.Is(err, storage.ErrPrecondition) {
		return errLostLease
	}
	if err != nil {
		return fmt.Errorf("finish outbox: %w", err)
	}
	for _, o := range outcomes {
		if o.DeadLetter != "" {
			s.o.metrics.deadLetters.WithLabelValues(string(s.dest), string(o.DeadLetter)).Inc()
		}
	}
	if len(notices) > 0 && s.o.cfg.Delivered != nil {
		s.o.cfg.Delivered(notices)
	}
	return nil
}

// send delivers one batch as one transaction and applies the answer. It
// returns only store errors and errLostLease; delivery failures are
// recorded in the delivery state.
func (s *sender) send(ctx context.Context, envs []storage.OutboxEnvelope) error {
	req := &federationv1.DeliverTransactionRequest{
		Origin:        string(s.o.cfg.Self),
		Destination:   string(s.dest),
		TransactionId: transactionID(envs),
		Envelopes:     make([]*federationv1.FederatedEnvelope, len(envs)),
	}
	for i, e := range envs {
		req.Envelopes[i] = &federationv1.FederatedEnvelope{
			EnvelopeId:        string(e.ID),
			SenderUser:        e.Sender + "@" + string(s.o.cfg.Self),
			SenderDeviceId:    string(e.SenderDevice),
			RecipientUser:     e.Recipient + "@" + string(s.dest),
			RecipientDeviceId: string(e.RecipientDevice),
			OriginServerTime:  timestamppb.New(e.ServerTime),
			Ciphertext:        e.Ciphertext,
			ExpireTime:        timestamppb.New(e.ExpireTime),
		}
	}
	c, err := s.o.pool.get(s.dest)
	if err != nil {
		if err := s.finished(ctx); err != nil {
			return err
		}
		s.o.metrics.transactions.WithLabelValues(string(s.dest), outcomeFailed).Inc()
		return s.failed(ctx, "peer is not trusted by this node (check its CA bundle)")
	}
	// The call never outlives the lease, so that no other owner can take
	// the queue while this batch is in flight. Each attempt dials afresh
	// if the connection failed before (a peer that comes back is reached
	// at once, not after the connection's own backoff), and a connection
	// that still fails fails the attempt at once, with its cause.
	timeout := min(s.o.cfg.RPCTimeout, s.leaseUntil.Add(-s.o.cfg.LeaseTTL/10).Sub(s.now()))
	rctx, cancel := context.WithTimeout(ctx, timeout)
	c.ready(rctx, connectWait)
	resp, err := c.client.DeliverTransaction(rctx, req)
	cancel()
	// The previous answer is recorded before this one is applied: at most
	// one FinishOutbox runs beside the sender.
	if ferr := s.finished(ctx); ferr != nil {
		return ferr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.callFailed(ctx, envs, err)
	}
	if !matches(resp, envs) {
		s.o.metrics.transactions.WithLabelValues(string(s.dest), outcomeMismatch).Inc()
		s.log.WarnContext(ctx, "peer answer does not match the transaction", "transaction", req.TransactionId,
			"envelopes", len(envs), "results", len(resp.GetResults()))
		return s.failed(ctx, "peer answer did not match the transaction")
	}
	s.o.metrics.transactions.WithLabelValues(string(s.dest), outcomeOK).Inc()
	outcomes := make([]storage.OutboxOutcome, len(envs))
	progress, final := false, true
	for i, r := range resp.GetResults() {
		outcomes[i].Seq = envs[i].Seq
		result := resultRetry
		switch r.GetStatus() {
		case federationv1.EnvelopeStatus_ENVELOPE_STATUS_ACCEPTED:
			outcomes[i].Delivered, result = true, resultAccepted
		case federationv1.EnvelopeStatus_ENVELOPE_STATUS_DUPLICATE:
			outcomes[i].Delivered, result = true, resultDuplicate
		default:
			if reason, permanent := failureReason(r); permanent {
				outcomes[i].DeadLetter, result = reason, resultDeadLetter
			} else if envs[i].Attempt+1 >= s.o.cfg.MaxAttempts {
				outcomes[i].DeadLetter, result = valise.FailureRejected, resultDeadLetter
			}
		}
		progress = progress || result != resultRetry
		final = final && result != resultRetry
		s.o.metrics.envelopes.WithLabelValues(string(s.dest), result).Inc()
	}
	if !progress {
		if err := s.finish(ctx, outcomes); err != nil {
			return err
		}
		return s.failed(ctx, "peer answered every envelope as retryable")
	}
	if !final {
		// Envelopes to retry stay ahead of the later ones of their
		// sending devices: record before reading the next batch.
		if err := s.finish(ctx, outcomes); err != nil {
			return err
		}
		return s.succeeded(ctx)
	}
	// Every envelope is done with (delivered or given up): record the
	// answer while the next batch is read and sent, so the next
	// transaction's round trip hides this durable write. The peer has
	// committed the delivered ones, so if the recording is lost (a crash)
	// they are sent again and answered DUPLICATE.
	s.finishAsync(ctx, envs, outcomes)
	return s.succeeded(ctx)
}

// finishAsync starts recording outcomes of envs beside the sender.
func (s *sender) finishAsync(ctx context.Context, envs []storage.OutboxEnvelope, outcomes []storage.OutboxOutcome) {
	f := &finishing{seqs: make([]int64, len(envs)), done: make(chan struct{})}
	for i, e := range envs {
		f.seqs[i] = e.Seq
	}
	s.finishing = f
	// A stopping sender still records what the peer answered.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	go func() {
		defer close(f.done)
		defer cancel()
		f.err = s.finish(fctx, outcomes)
	}()
}

// finished waits for the recording started by finishAsync, if any, and
// returns its error.
func (s *sender) finished(ctx context.Context) error {
	f := s.finishing
	if f == nil {
		return nil
	}
	s.finishing = nil
	<-f.done
	return f.err
}

// callFailed handles a DeliverTransaction that got no answer.
func (s *sender) callFailed(ctx context.Context, envs []storage.OutboxEnvelope, err error) error {
	st := status.Convert(err)
	delay, hasRetry := retryDelay(st)
	now := s.now()
	switch {
	case st.Code() == codes.InvalidArgument || st.Code() == codes.ResourceExhausted && !hasRetry:
		// Permanent for this batch: split it. A single envelope refused
		// again after a backoff is given up. Every refusal backs off, so a
		// peer that refuses everything (for a reason that is not the
		// batch's) cannot make this node drain its queue at once.
		s.o.metrics.transactions.WithLabelValues(string(s.dest), outcomeRejected).Inc()
		s.log.WarnContext(ctx, "peer refused a transaction as a whole", "code", st.Code().String(),
			"envelopes", len(envs), "detail", sanitize(st.Message(), 120))
		switch {
		case len(envs) > 1:
			s.batch = max(1, len(envs)/2)
		case envs[0].Attempt == 0:
			if err := s.finish(ctx, []storage.OutboxOutcome{{Seq: envs[0].Seq}}); err != nil {
				return err
			}
		default:
			if err := s.finish(ctx, []storage.OutboxOutcome{{Seq: envs[0].Seq, DeadLetter: valise.FailureRejected}}); err != nil {
				return err
			}
			s.o.metrics.envelopes.WithLabelValues(string(s.dest), resultDeadLetter).Inc()
		}
		return s.failed(ctx, fmt.Sprintf("peer refused a transaction of %d envelopes: %s", len(envs), st.Code()))
	case st.Code() == codes.ResourceExhausted:
		s.o.metrics.transactions.WithLabelValues(string(s.dest), outcomeRateLimited).Inc()
		delay = min(max(delay, s.o.cfg.BackoffMin), s.o.cfg.BackoffMax)
		s.limitedUntil = now.Add(delay)
		s.state.LastError = "peer asked this node to slow down"
		s.state.LastErrorAt = now
		s.state.NextAttempt = s.limitedUntil
		s.dirty = true
		return s.writeState(ctx)
	}
	s.o.metrics.transactions.WithLabelValues(string(s.dest), outcomeFailed).Inc()
	if st.Code() == codes.DeadlineExceeded {
		// Perhaps the link is too slow for a full batch within the
		// deadline: try a smaller one (it grows back after successes).
		s.batch = max(1, len(envs)/2)
	}
	if st.Code() == codes.PermissionDenied || st.Code() == codes.Unauthenticated {
		// The peer no longer accepts the certificate this connection was
		// opened with (e.g. it now trusts only this node's new CA): the
		// next attempt opens a new connection with the current one.
		s.o.pool.drop(s.dest)
	}
	return s.failed(ctx, fmt.Sprintf("delivery failed: %s: %s", st.Code(), sanitize(transportCause(st.Message()), 160)))
}

// failed records a failed attempt and schedules the next with backoff.
func (s *sender) failed(ctx context.Context, reason string) error {
	now := s.now()
	s.state.Failures++
	d := s.backoff(s.state.Failures)
	s.state.LastError = reason
	s.state.LastErrorAt = now
	s.state.NextAttempt = now.Add(d)
	s.dirty = true
	s.log.WarnContext(ctx, "delivery failed", "reason", reason, "failures", s.state.Failures, "retry_in", d)
	return s.writeState(ctx)
}

// succeeded records a transaction that made progress. The state is
// written at most about once a second while all goes well.
func (s *sender) succeeded(ctx context.Context) error {
	now := s.now()
	wasFailing := s.state.Failures > 0 || s.state.LastError != "" || !s.state.NextAttempt.IsZero()
	s.state.Failures = 0
	s.state.LastError = ""
	s.state.NextAttempt = time.Time{}
	s.state.LastSuccess = now
	s.dirty = true
	s.batch = min(s.o.cfg.BatchEnvelopes, s.batch*2)
	if wasFailing || now.Sub(s.written) >= time.Second {
		return s.writeState(ctx)
	}
	return nil
}

// backoff returns the delay after the given number of consecutive
// failures: BackoffMin doubled per earlier failure, capped at BackoffMax,
// with ±20 % jitter (never above BackoffMax), as THREATS.md sets out.
func (s *sender) backoff(failures int) time.Duration {
	lo, hi := s.o.cfg.BackoffMin, s.o.cfg.BackoffMax
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	jitter := time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	return min(d+jitter, hi)
}

func (s *sender) writeState(ctx context.Context) error {
	if err := s.o.cfg.Store.SetDeliveryState(ctx, s.dest, s.state); err != nil {
		return fmt.Errorf("set delivery state: %w", err)
	}
	s.dirty = false
	s.written = s.now()
	return nil
}

// flush writes the state if it has unwritten changes and this sender
// holds the lease (only the holder writes the shared state).
func (s *sender) flush(ctx context.Context) {
	if !s.dirty || !s.leaseUntil.After(s.now()) {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := s.writeState(wctx); err != nil {
		s.log.WarnContext(ctx, "writing delivery state failed", "error", err)
	}
}

// release gives up the lease if it is held.
func (s *sender) release(ctx context.Context) {
	if s.leaseUntil.IsZero() {
		return
	}
	s.leaseUntil = time.Time{}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	if err := s.o.cfg.Store.ReleaseOutboxLease(rctx, s.dest, s.o.cfg.Owner); err != nil {
		s.log.WarnContext(ctx, "releasing outbox lease failed", "error", err)
	}
}

// stop releases what a stopping sender holds.
func (s *sender) stop(ctx context.Context) {
	s.finished(ctx)
	s.flush(ctx)
	s.release(ctx)
}

// transactionID names a batch: "t" and the hex of the first 16 bytes of
// SHA-256 over each envelope's id and attempt. Retrying exactly the same
// envelopes (no answer was applied) reuses the id; any other set, or the
// same envelopes after an answer was applied, gets another.
func transactionID(envs []storage.OutboxEnvelope) string {
	h := sha256.New()
	var n [8]byte
	for _, e := range envs {
		h.Write([]byte(e.ID))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(n[:], uint64(e.Attempt))
		h.Write(n[:])
	}
	return "t" + hex.EncodeToString(h.Sum(nil)[:16])
}

// matches reports whether resp has one result per envelope, in order.
func matches(resp *federationv1.DeliverTransactionResponse, envs []storage.OutboxEnvelope) bool {
	if len(resp.GetResults()) != len(envs) {
		return false
	}
	for i, r := range resp.GetResults() {
		if r.GetEnvelopeId() != string(envs[i].ID) {
			return false
		}
	}
	return true
}

// failureReason maps a result that is neither ACCEPTED nor DUPLICATE to
// the reason to dead-letter it for, if it is permanent.
func failureReason(r *federationv1.EnvelopeResult) (valise.FailureReason, bool) {
	switch r.GetStatus() {
	case federationv1.EnvelopeStatus_ENVELOPE_STATUS_UNSPECIFIED:
		return "", false
	case federationv1.EnvelopeStatus_ENVELOPE_STATUS_UNKNOWN_RECIPIENT:
		return valise.FailureUnknownRecipient, true
	case federationv1.EnvelopeStatus_ENVELOPE_STATUS_RECIPIENT_DEACTIVATED:
		return valise.FailureRecipientDeactivated, true
	case federationv1.EnvelopeStatus_ENVELOPE_STATUS_TOO_LARGE:
		return valise.FailureTooLarge, true
	case federationv1.EnvelopeStatus_ENVELOPE_STATUS_INVALID:
		return valise.FailureInvalid, true
	case federationv1.EnvelopeStatus_ENVELOPE_STATUS_EXPIRED:
		return valise.FailureExpired, true
	}
	if r.GetPermanent() {
		return valise.FailureRejected, true
	}
	return "", false
}

// sanitize keeps at most n bytes of printable ASCII of s, for text that
// may come from a peer.
func sanitize(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// transportCause drops the wrapping gRPC puts around a connection error,
// so that what an admin needs (e.g. "x509: certificate signed by unknown
// authority", "connection refused") fits in the delivery state.
func transportCause(msg string) string {
	for _, p := range []string{"connection error: desc = ", "\"", "transport: ", "authentication handshake failed: ", "Error while dialing: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if i := strings.Index(msg, "x509: "); i >= 0 {
		msg = msg[i:]
	}
	return strings.TrimSuffix(msg, "\"")
}
