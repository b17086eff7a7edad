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
	commitFailures    prometheus.Counter
	pingSeconds       prometheus.Histogram
	storageUp         prometheus.Gauge
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
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "valise_storage_commit_failures_total",
			Help: "Group commits that failed (database down, disk full, ...); their senders got an error, nothing was acknowledged.",
		}),
		pingSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "valise_storage_ping_seconds",
			Help:    "Duration of the database ping made every 10 s (answered pings only).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		storageUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "valise_storage_up",
			Help: "1 if the last database ping (every 10 s, 5 s timeout) was answered, else 0.",
		}),
		reg: reg,
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.envelopesAccepted, m.envelopesDeliver, m.commitSeconds, m.commitEnvelopes,
			m.commitFailures, m.pingSeconds, m.storageUp)
	}
	return m
}

func (m *Metrics) observeCommit(_, envelopes int, d time.Duration, err error) {
	if err != nil {
		m.commitFailures.Inc()
		return
	}
	m.commitSeconds.Observe(d.Seconds())
	m.commitEnvelopes.Observe(float64(envelopes))
}

func (m *Metrics) observePing(d time.Duration, err error) {
	if err != nil {
		m.storageUp.Set(0)
		return
	}
	m.storageUp.Set(1)
	m.pingSeconds.Observe(d.Seconds())
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
