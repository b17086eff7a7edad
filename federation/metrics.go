package federation

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values are bounded: peer names come from the admin's peer list
// (only listed peers pass the handshake, and the outbox only holds
// destinations that were listed when the envelope was sent), methods and
// codes are fixed sets, and results, outcomes and reasons are the
// constants of this package and valise.FailureReason.

// serviceMetrics are the inbound FederationService's metrics.
type serviceMetrics struct {
	calls        *prometheus.CounterVec // method, code
	inbound      *prometheus.CounterVec // peer, status
	transactions *prometheus.CounterVec // peer, result
}

func newServiceMetrics(reg prometheus.Registerer) *serviceMetrics {
	return &serviceMetrics{
		calls: counterVec(reg, prometheus.CounterOpts{
			Name: "valise_federation_inbound_calls_total",
			Help: "FederationService calls served, by method and gRPC code.",
		}, "method", "code"),
		inbound: counterVec(reg, prometheus.CounterOpts{
			Name: "valise_federation_inbound_envelopes_total",
			Help: "Envelopes delivered by peers, by peer and verdict.",
		}, "peer", "status"),
		transactions: counterVec(reg, prometheus.CounterOpts{
			Name: "valise_federation_inbound_transactions_total",
			Help: "Transactions delivered by peers, by peer and result (committed, or replayed: a retry answered with the first answer).",
		}, "peer", "result"),
	}
}

// outboundMetrics are the outbound senders' metrics.
type outboundMetrics struct {
	envelopes    *prometheus.CounterVec // peer, result
	transactions *prometheus.CounterVec // peer, outcome
	deadLetters  *prometheus.CounterVec // peer, reason
	depth        *prometheus.GaugeVec   // peer
	oldest       *prometheus.GaugeVec   // peer
}

// Results of one sent envelope.
const (
	resultAccepted   = "accepted"
	resultDuplicate  = "duplicate"
	resultDeadLetter = "dead_letter"
	resultRetry      = "retry"
)

// Outcomes of one transaction.
const (
	outcomeOK          = "ok"           // answered, results matched
	outcomeMismatch    = "mismatch"     // answered, results did not match
	outcomeRejected    = "rejected"     // refused as permanent for the batch
	outcomeRateLimited = "rate_limited" // refused with RetryInfo
	outcomeFailed      = "failed"       // any other failure
)

func newOutboundMetrics(reg prometheus.Registerer) *outboundMetrics {
	return &outboundMetrics{
		envelopes: counterVec(reg, prometheus.CounterOpts{
			Name: "valise_federation_envelopes_sent_total",
			Help: "Envelopes sent to peers, by peer and result (accepted, duplicate, dead_letter, retry).",
		}, "peer", "result"),
		transactions: counterVec(reg, prometheus.CounterOpts{
			Name: "valise_federation_transactions_total",
			Help: "DeliverTransaction calls to peers, by peer and outcome (ok, mismatch, rejected, rate_limited, failed).",
		}, "peer", "outcome"),
		deadLetters: counterVec(reg, prometheus.CounterOpts{
			Name: "valise_federation_dead_letters_total",
			Help: "Envelopes for peers given up for good, by peer and reason.",
		}, "peer", "reason"),
		depth: gaugeVec(reg, prometheus.GaugeOpts{
			Name: "valise_federation_outbox_depth",
			Help: "Envelopes queued for each peer, as of the last outbox poll.",
		}, "peer"),
		oldest: gaugeVec(reg, prometheus.GaugeOpts{
			Name: "valise_federation_outbox_oldest_age_seconds",
			Help: "Age of the oldest envelope queued for each peer, as of the last outbox poll.",
		}, "peer"),
	}
}

// counterVec registers a counter vector with reg (nil: not registered);
// if reg already has an identical one, that one is used.
func counterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(opts, labels)
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return old
			}
		}
		panic(err) // a programming error: conflicting metric definitions
	}
	return c
}

// gaugeVec is counterVec for gauges.
func gaugeVec(reg prometheus.Registerer, opts prometheus.GaugeOpts, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(opts, labels)
	if reg == nil {
		return g
	}
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return old
			}
		}
		panic(err)
	}
	return g
}
