package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the node's Prometheus metrics. They register on the registry
// given to NewMetrics, never on a global one.
type Metrics struct {
	requests          *prometheus.CounterVec
	envelopesAccepted prometheus.Counter
	envelopesDeliver  prometheus.Counter
	commitSeconds     prometheus.Histogram
	commitEnvelopes   prometheus.Histogram
	reg               prometheus.Registerer
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "valise_grpc_requests_total",
			Help: "gRPC requests handled, by service method and status code.",
		}, []string{"method", "code"}),
		envelopesAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valise_envelopes_accepted_total",
			Help: "Envelopes committed to inboxes.",
		}),
		envelopesDeliver: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valise_envelopes_delivered_total",
			Help: "Envelopes pushed to open inbox streams.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "valise_storage_commit_seconds",
			Help:    "Duration of group commits, including fsync.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		commitEnvelopes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "valise_storage_commit_envelopes",
			Help:    "Envelopes per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		reg: reg,
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.envelopesAccepted, m.envelopesDeliver, m.commitSeconds, m.commitEnvelopes)
	}
	return m
}

func (m *Metrics) observeCommit(_, envelopes int, d time.Duration, err error) {
	if err != nil {
		return
	}
	m.commitSeconds.Observe(d.Seconds())
	m.commitEnvelopes.Observe(float64(envelopes))
}

func (m *Metrics) setStreams(f func() int) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "valise_inbox_streams_open",
		Help: "Open StreamInbox streams.",
	}, func() float64 { return float64(f()) }))
}

func (m *Metrics) setInboxDepth(f func(context.Context) (int64, error)) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "valise_inbox_depth",
		Help: "Envelopes waiting in all device inboxes (-1 if the database did not answer).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := f(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}
