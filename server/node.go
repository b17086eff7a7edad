package server

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/groupcommit"
)

// Node is the logic of a node's client and admin services. It is safe for
// concurrent use. Create it with NewNode and run it with Run.
type Node struct {
	cfg     Config
	store   storage.Store
	writer  *groupcommit.Writer
	hub     *hub
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	loginAddr, loginAccount, loginFailure *keyedLimiter
	send, claim                           *keyedLimiter
	// hashSem bounds concurrent argon2id computations (each uses
	// Password.MemoryK of memory).
	hashSem chan struct{}
	// stopping is closed by StopStreams.
	stopping     chan struct{}
	stoppingOnce sync.Once
	// dummyHash is checked for unknown users so they take as long as known
	// ones.
	dummyHash string
}

// NewNode returns a Node over store. metrics may be nil.
func NewNode(cfg Config, store storage.Store, metrics *Metrics, log *slog.Logger) *Node {
	cfg = withDefaults(cfg)
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	n := &Node{
		cfg:      cfg,
		store:    store,
		hub:      newHub(),
		log:      log.With("component", "server"),
		metrics:  metrics,
		now:      time.Now,
		hashSem:  make(chan struct{}, max(2, runtime.NumCPU())),
		stopping: make(chan struct{}),
	}
	n.writer = groupcommit.New(store, groupcommit.Config{Observe: metrics.observeCommit, Committed: n.committed},
		n.log.With("component", "server.groupcommit"))
	n.loginAddr = newKeyedLimiter(cfg.Limits.Login, n.now)
	n.loginAccount = newKeyedLimiter(cfg.Limits.Login, n.now)
	n.loginFailure = newKeyedLimiter(cfg.Limits.LoginFailure, n.now)
	n.send = newKeyedLimiter(cfg.Limits.Send, n.now)
	n.claim = newKeyedLimiter(cfg.Limits.Claim, n.now)
	n.dummyHash = HashPassword(cfg.Password, "valise-dummy-password")
	metrics.setStreams(n.hub.streams)
	metrics.setInboxDepth(store.InboxDepth)
	return n
}

func withDefaults(c Config) Config {
	d := DefaultConfig()
	if c.MaxCiphertextBytes <= 0 {
		c.MaxCiphertextBytes = d.MaxCiphertextBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = d.MaxRecipients
	}
	if c.MaxOneTimeKeysPerUpload <= 0 {
		c.MaxOneTimeKeysPerUpload = d.MaxOneTimeKeysPerUpload
	}
	if c.MaxOneTimeKeysStored <= 0 {
		c.MaxOneTimeKeysStored = d.MaxOneTimeKeysStored
	}
	if c.MaxStreamsPerDevice <= 0 {
		c.MaxStreamsPerDevice = d.MaxStreamsPerDevice
	}
	if c.Password.Time == 0 {
		c.Password = d.Password
	}
	if c.Limits == (Limits{}) {
		c.Limits = d.Limits
	}
	if c.GRPC == (GRPCLimits{}) {
		c.GRPC = d.GRPC
	}
	if c.IdempotencyRetention <= 0 {
		c.IdempotencyRetention = d.IdempotencyRetention
	}
	return c
}

// committed wakes the streams of every device a commit wrote to. The
// writer calls it, not Send, so a sender whose context ended while its
// send was committing does not leave the recipients' streams asleep.
func (n *Node) committed(sends []storage.SendResult) {
	for _, r := range sends {
		if r.Err != nil {
			continue
		}
		n.metrics.envelopesAccepted.Add(float64(len(r.Deliveries)))
		for _, d := range r.Deliveries {
			n.hub.notify(d.User, d.Device)
		}
	}
}

// Run runs the group-commit writer and, beside it, the hourly pruning of
// expired idempotency records (see prune.go) and, when the store is shared
// by replicas, the listener of their commits (see events.go) until ctx
// ends. It returns once all have stopped.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pruned := make(chan struct{})
	go func() { defer close(pruned); n.runPruner(ctx, pruneInterval) }()
	listened := make(chan struct{})
	go func() { defer close(listened); n.runEvents(ctx) }()
	err := n.writer.Run(ctx)
	cancel()
	<-pruned
	<-listened
	return err
}

// StopStreams ends every open and future inbox stream with Unavailable, so
// a graceful stop need not wait for them; clients resume from their cursor
// on another connection or after the restart.
func (n *Node) StopStreams() { n.stoppingOnce.Do(func() { close(n.stopping) }) }

// Name returns the node's name.
func (n *Node) Name() valise.NodeName { return n.cfg.Node }

// localUser parses s as a user of this node. A user of another node is
// NotFound while federation is off.
func (n *Node) localUser(s string) (string, error) {
	u, err := valise.ParseUserID(s, n.cfg.Node)
	if err != nil {
		return "", err
	}
	if u.Node != n.cfg.Node {
		return "", valise.Errorf(valise.KindNotFound, "user %s is on another node and federation is not enabled", u)
	}
	return u.Localpart, nil
}

func (n *Node) userID(localpart string) valise.UserID {
	return valise.UserID{Localpart: localpart, Node: n.cfg.Node}
}

// hash runs f with a slot of the argon2id semaphore.
func (n *Node) hash(ctx context.Context, f func()) error {
	select {
	case n.hashSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-n.hashSem }()
	f()
	return nil
}
