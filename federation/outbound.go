package federation

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// OutboundConfig is what an Outbound needs. Self, Store, Trust and Cert
// are required; a zero duration or size takes its default.
type OutboundConfig struct {
	// Self is this node's name.
	Self valise.NodeName
	// Store holds the outbox, leases, delivery states and pinned keys.
	Store storage.Store
	// Trust is the peer list; only its listed, unblocked peers are
	// dialed, each proven by its own CA bundle.
	Trust *Trust
	// Cert returns this node's federation certificate; it is called per
	// handshake, so a rotated certificate applies without restart.
	Cert func() (*tls.Certificate, error)
	// Owner names this process in outbox leases; replicas sharing a
	// store must use distinct owners. Default: random per Outbound.
	Owner string
	// BatchEnvelopes bounds the envelopes of one transaction. Default 100.
	BatchEnvelopes int
	// BatchBytes bounds the ciphertext of one transaction (a single
	// larger envelope still goes alone). Default 4 MiB.
	BatchBytes int
	// TTL is the outbox time to live, for information: the client-facing
	// server stamps each envelope's ExpireTime, and the senders give up
	// envelopes past it. Default 30 days.
	TTL time.Duration
	// MaxAttempts is how many retryable answers one envelope may get
	// before it is given up (FailureRejected), so that a poison envelope
	// never blocks its queue. Default 5.
	MaxAttempts int
	// BackoffMin is the delay after one failed transaction; it doubles
	// with each consecutive failure up to BackoffMax, each delay with
	// ±20 % jitter (never above BackoffMax). A call from the peer or Retry
	// resets it. Default 1 s.
	BackoffMin time.Duration
	// BackoffMax caps the delay bound. Default 5 min.
	BackoffMax time.Duration
	// LeaseTTL is how long one lease on a destination's outbox lasts; it
	// is renewed before a transaction once half of it is spent, and a
	// transaction's deadline never outlives it. Default 30 s.
	LeaseTTL time.Duration
	// Poll is how often the outbox is scanned for destinations with
	// queued envelopes (wakes from Queued act at once). Default 2 s.
	Poll time.Duration
	// RPCTimeout bounds one DeliverTransaction. Default 30 s.
	RPCTimeout time.Duration
	// KeyTimeout bounds one key query or claim to a peer. Default 10 s.
	KeyTimeout time.Duration
	// MaxClockSkew is how far a signed answer's issued time may be from
	// this node's clock. Default 5 minutes.
	MaxClockSkew time.Duration
	// Delivered, if not nil, is called with the inbox rows of the
	// delivery-failure notices written for dead letters, to wake the
	// sending devices' streams. It must not block.
	Delivered func([]storage.Delivery)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives the senders' logs; nil discards them.
	Log *slog.Logger
	// Registerer receives the senders' metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c *OutboundConfig) setDefaults() {
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
	if c.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Owner = "outbound-" + hex.EncodeToString(b[:])
	}
	setInt(&c.BatchEnvelopes, 100)
	setInt(&c.BatchBytes, 4<<20)
	setDur(&c.TTL, 30*24*time.Hour)
	setInt(&c.MaxAttempts, 5)
	setDur(&c.BackoffMin, time.Second)
	setDur(&c.BackoffMax, 5*time.Minute)
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	setDur(&c.LeaseTTL, 30*time.Second)
	setDur(&c.Poll, 2*time.Second)
	setDur(&c.RPCTimeout, 30*time.Second)
	setDur(&c.KeyTimeout, 10*time.Second)
	setDur(&c.MaxClockSkew, 5*time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Outbound delivers this node's outbox to its peers and looks up keys on
// them. Run keeps one sender per destination with queued envelopes, so a
// slow or dead peer never delays the others; each sender holds its
// destination's outbox lease (so replicas sharing a store never send the
// same batch), sends one transaction at a time in outbox order over a
// pooled mTLS connection, and backs off after failures, with its state
// in the store so that it survives restarts.
//
// Outbound implements the client-facing server's Remote interface. Its
// methods are safe for concurrent use and may be called before Run
// starts (wakes then wait for it).
type Outbound struct {
	cfg     OutboundConfig
	log     *slog.Logger
	metrics *outboundMetrics
	pool    *connPool

	// kick wakes Run to start or wake the senders of pending.
	kick chan struct{}

	mu sync.Mutex
	// pending maps destinations to wake to whether their backoff is
	// reset.
	pending map[valise.NodeName]bool
	senders map[valise.NodeName]*sender
	// contacts records when each peer last called this node.
	contacts map[valise.NodeName]time.Time
	// fetched records when each peer's signing keys were last fetched.
	fetched map[valise.NodeName]time.Time

	wg sync.WaitGroup
}

// NewOutbound returns an Outbound for cfg; it sends nothing until Run.
func NewOutbound(cfg OutboundConfig) *Outbound {
	cfg.setDefaults()
	log := cfg.Log.With("component", "federation.sender")
	return &Outbound{
		cfg:      cfg,
		log:      log,
		metrics:  newOutboundMetrics(cfg.Registerer),
		pool:     newConnPool(cfg.Trust, cfg.Cert, cfg.BackoffMin, cfg.BackoffMax, cfg.RPCTimeout),
		kick:     make(chan struct{}, 1),
		pending:  map[valise.NodeName]bool{},
		senders:  map[valise.NodeName]*sender{},
		contacts: map[valise.NodeName]time.Time{},
		fetched:  map[valise.NodeName]time.Time{},
	}
}

// CheckDestination returns nil if envelopes may be queued for node: a
// listed, unblocked peer. Otherwise it returns a *valise.Error:
// KindInvalid for this node's own name, KindPermission for any other.
func (o *Outbound) CheckDestination(node valise.NodeName) error {
	if node == o.cfg.Self {
		return valise.Errorf(valise.KindInvalid, "node %s is this node", node)
	}
	if !o.cfg.Trust.Allowed(node) {
		return valise.Errorf(valise.KindPermission, "node %s is not a federation peer of this node (or is blocked)", node)
	}
	return nil
}

// Queued tells the senders that a commit queued envelopes for dests. It
// does not block.
func (o *Outbound) Queued(dests []valise.NodeName) {
	o.mu.Lock()
	for _, d := range dests {
		if _, ok := o.pending[d]; !ok {
			o.pending[d] = false
		}
	}
	o.mu.Unlock()
	o.wakeRun()
}

// Retry makes the sender for node try again now: its backoff is reset,
// the NextAttempt of its stored delivery state is cleared, and it wakes.
// It does not block.
func (o *Outbound) Retry(node valise.NodeName) {
	o.mu.Lock()
	o.pending[node] = true
	o.mu.Unlock()
	o.wakeRun()
}

// PeersChanged makes every running sender try again now, as Retry does:
// call it after the peer list changed (a peer's address or CA bundle was
// fixed, a block lifted, a peer removed, whose queue must then be given
// up). It does not block.
func (o *Outbound) PeersChanged() {
	o.mu.Lock()
	for d := range o.senders {
		o.pending[d] = true
	}
	o.mu.Unlock()
	o.wakeRun()
}

// Contact tells the sender for node that node just called this node
// successfully: if it was backing off, it resets its backoff and tries
// again at once. It does not block; it is meant as ServiceConfig.Contact.
func (o *Outbound) Contact(node valise.NodeName) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.contacts[node] = o.cfg.Now()
	if s := o.senders[node]; s != nil && s.backingOff.Load() {
		s.poke(resetContact)
	}
}

func (o *Outbound) wakeRun() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// contactedAfter reports whether node called this node after t.
func (o *Outbound) contactedAfter(node valise.NodeName, t time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	c, ok := o.contacts[node]
	return ok && c.After(t)
}

// Run delivers the outbox until ctx is done: it scans the outbox every
// Poll and on wakes and keeps one sender per destination with queued
// envelopes (the node's pruning loop, not Outbound, deletes old federation
// records). When ctx is done it stops the senders (releasing their
// leases), closes the connections and returns nil.
func (o *Outbound) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		o.wg.Wait()
		o.pool.close()
	}()
	tick := time.NewTicker(o.cfg.Poll)
	defer tick.Stop()
	failing := false
	poll := func() { failing = o.poll(ctx, failing) }
	poll()
	for {
		o.startPending(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			poll()
		case <-o.kick:
		}
	}
}

// poll reads the outbox statistics, updates the gauges and makes sure
// every destination with queued envelopes has a sender. It returns
// whether the read failed, logging only changes of that.
func (o *Outbound) poll(ctx context.Context, failing bool) bool {
	stats, err := o.cfg.Store.OutboxStats(ctx)
	if err != nil {
		if !failing && ctx.Err() == nil {
			o.log.WarnContext(ctx, "outbox scan failed", "error", err)
		}
		return true
	}
	if failing {
		o.log.InfoContext(ctx, "outbox scan works again")
	}
	now := o.cfg.Now()
	o.metrics.depth.Reset()
	o.metrics.oldest.Reset()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, st := range stats {
		o.metrics.depth.WithLabelValues(string(st.Destination)).Set(float64(st.Depth))
		o.metrics.oldest.WithLabelValues(string(st.Destination)).Set(max(now.Sub(st.Oldest).Seconds(), 0))
		if st.Depth > 0 {
			o.ensureLocked(ctx, st.Destination, false)
		}
	}
	return false
}

// startPending starts or wakes the senders of the pending destinations.
func (o *Outbound) startPending(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for dest, reset := range o.pending {
		delete(o.pending, dest)
		if dest == o.cfg.Self {
			continue
		}
		o.ensureLocked(ctx, dest, reset)
	}
}

// ensureLocked wakes dest's sender, starting one if there is none. o.mu
// must be held.
func (o *Outbound) ensureLocked(ctx context.Context, dest valise.NodeName, reset bool) {
	kind := -1
	if reset {
		kind = resetAdmin
	}
	if s := o.senders[dest]; s != nil {
		s.poke(kind)
		return
	}
	if ctx.Err() != nil {
		return
	}
	s := newSender(o, dest)
	s.resetAdmin.Store(reset)
	o.senders[dest] = s
	o.wg.Add(1)
	go s.run(ctx)
}

// retire removes s from the senders unless it was woken since it last
// looked at its queue; it reports whether s must stop.
func (o *Outbound) retire(s *sender, force bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !force {
		select {
		case <-s.wake:
			return false
		default:
		}
	}
	if o.senders[s.dest] == s {
		delete(o.senders, s.dest)
	}
	return true
}
