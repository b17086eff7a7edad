package server

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/ratelimit"
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

	loginAddr, loginAccount, loginFailure  *ratelimit.Keyed
	send, claim, remoteClaim, remoteLookup *ratelimit.Keyed
	// hashSem bounds concurrent argon2id computations (each uses
	// Password.MemoryK of memory).
	hashSem chan struct{}
	// stopping is closed by StopStreams.
	stopping     chan struct{}
	stoppingOnce sync.Once
	// dummyHash is checked for unknown users so they take as long as known
	// ones.
	dummyHash string
	// backingUp is held while a database backup runs (one at a time).
	backingUp sync.Mutex
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
	n.writer = groupcommit.New(store, groupcommit.Config{Observe: metrics.observeCommit, Committed: n.committed, Failed: n.commitFailed},
		n.log.With("component", "server.groupcommit"))
	n.loginAddr = ratelimit.NewKeyed(cfg.Limits.Login, n.now)
	n.loginAccount = ratelimit.NewKeyed(cfg.Limits.Login, n.now)
	n.loginFailure = ratelimit.NewKeyed(cfg.Limits.LoginFailure, n.now)
	n.send = ratelimit.NewKeyed(cfg.Limits.Send, n.now)
	n.claim = ratelimit.NewKeyed(cfg.Limits.Claim, n.now)
	n.remoteLookup = ratelimit.NewKeyed(cfg.Limits.RemoteLookup, n.now)
	n.remoteClaim = ratelimit.NewKeyed(cfg.Limits.Claim, n.now)
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
	if c.OutboxTTL <= 0 {
		c.OutboxTTL = d.OutboxTTL
	}
	if c.FederationRetention <= 0 {
		c.FederationRetention = d.FederationRetention
	}
	c.FederationRetention = max(c.FederationRetention, c.OutboxTTL)
	return c
}

// committed pushes the envelopes of a commit to the open streams of the
// devices they were written to, and wakes the senders of every
// destination it queued for. The writer calls it, not Send, so a sender
// whose context ended while its send was committing does not leave the
// recipients' streams asleep.
func (n *Node) committed(b *storage.Batch, res *storage.BatchResult) {
	var dests []valise.NodeName
	for i, r := range res.Sends {
		if r.Err != nil {
			continue
		}
		n.metrics.envelopesAccepted.Add(float64(len(r.Deliveries)))
		n.pushSend(&b.Sends[i], r.Deliveries)
		dests = append(dests, r.Outbound...)
	}
	if len(dests) > 0 && n.cfg.Remote != nil {
		n.cfg.Remote.Queued(dests)
	}
}

// commitFailed wakes, after a group commit that returned an error, the
// streams of every local device the batch wrote to and the senders of
// every destination it queued for: the commit may have happened all the
// same (a lost answer to COMMIT), and then nothing else would wake them,
// since the callers' retries are replays that write nothing and this
// store's own PostgreSQL events are skipped. The streams read storage.
func (n *Node) commitFailed(b *storage.Batch) {
	var dests []valise.NodeName
	for i := range b.Sends {
		op := &b.Sends[i]
		for _, e := range op.Envelopes {
			if e.RecipientNode != "" {
				if !slices.Contains(dests, e.RecipientNode) {
					dests = append(dests, e.RecipientNode)
				}
				continue
			}
			n.hub.notify(e.Recipient, e.RecipientDevice)
		}
	}
	if len(dests) > 0 && n.cfg.Remote != nil {
		n.cfg.Remote.Queued(dests)
	}
}

// pushSend pushes a committed send's local envelopes to the streams of
// their devices. ds are the send's deliveries: one per local envelope, in
// the op's order (the storage.SendResult contract).
func (n *Node) pushSend(op *storage.SendOp, ds []storage.Delivery) {
	if op.ServerTime.IsZero() {
		n.ring(ds) // the store chose the time: read it back from storage
		return
	}
	j := 0
	for _, e := range op.Envelopes {
		if e.RecipientNode != "" {
			continue
		}
		if j == len(ds) {
			break
		}
		d := ds[j]
		j++
		if d.User != e.Recipient || d.Device != e.RecipientDevice {
			n.ring(ds[j-1:]) // not the contract's pairing: let storage say
			return
		}
		n.hub.push(valise.Envelope{
			ID:              e.ID,
			Cursor:          d.Cursor,
			Sender:          op.Sender,
			SenderDevice:    op.SenderDevice,
			Recipient:       valise.UserID{Localpart: d.User},
			RecipientDevice: d.Device,
			ServerTime:      op.ServerTime,
			Ciphertext:      e.Ciphertext,
		})
	}
}

// Delivered wakes the inbox streams of the devices ds wrote to. The
// federation calls it after committing envelopes from other nodes or
// delivery-failure notices; it does not block.
func (n *Node) Delivered(ds []storage.Delivery) {
	n.metrics.envelopesAccepted.Add(float64(len(ds)))
	n.ring(ds)
}

// ring wakes the streams of the devices ds wrote to, which read storage.
func (n *Node) ring(ds []storage.Delivery) {
	for _, d := range ds {
		n.hub.notify(d.User, d.Device)
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
	pinged := make(chan struct{})
	go func() { defer close(pinged); n.runPinger(ctx, pingInterval) }()
	err := n.writer.Run(ctx)
	cancel()
	<-pruned
	<-listened
	<-pinged
	return err
}

// StopStreams ends every open and future inbox stream with Unavailable, so
// a graceful stop need not wait for them; clients resume from their cursor
// on another connection or after the restart.
func (n *Node) StopStreams() { n.stoppingOnce.Do(func() { close(n.stopping) }) }

// Name returns the node's name.
func (n *Node) Name() valise.NodeName { return n.cfg.Node }

// remoteUser parses s as a user of this or another node. For a user of
// another node it returns the Remote to reach it, or why it cannot be
// reached.
func (n *Node) remoteUser(s string) (valise.UserID, Remote, error) {
	u, err := valise.ParseUserID(s, n.cfg.Node)
	if err != nil || u.Node == n.cfg.Node {
		return u, nil, err
	}
	if n.cfg.Remote == nil {
		return u, nil, valise.Errorf(valise.KindNotFound, "user %s is on another node and federation is not enabled", u)
	}
	if err := n.cfg.Remote.CheckDestination(u.Node); err != nil {
		return u, nil, err
	}
	return u, n.cfg.Remote, nil
}

// localUser parses s as a user of this node. A user of another node is
// NotFound.
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
