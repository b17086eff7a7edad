// Package groupcommit is the single writer in front of a storage.Inboxes: it
// gathers the sends and acks that arrive while the previous commit is in
// flight and commits them together in one database transaction, then
// answers every caller. One durable commit thus serves many envelopes (see
// "Performance model" in DESIGN.md).
//
// It imports only storage and the domain vocabulary; the server uses it.
package groupcommit

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/valise-im/valise/storage"
)

// ErrClosed is returned for work submitted after Run has returned.
var ErrClosed = errors.New("groupcommit: writer stopped")

// Committer is the part of the store the writer needs.
type Committer interface {
	CommitBatch(ctx context.Context, b *storage.Batch) (*storage.BatchResult, error)
}

// Config bounds one group commit.
type Config struct {
	// MaxEnvelopes bounds the envelopes of one commit (a single send larger
	// than this still commits, alone). Default 1,000.
	MaxEnvelopes int
	// MaxOps bounds the sends and acks of one commit. Default 500.
	MaxOps int
	// Observe, if set, is called after each commit with its size and
	// duration (for metrics).
	Observe func(ops, envelopes int, d time.Duration, err error)
	// Committed, if set, is called by the writer after each successful
	// commit with the batch and its result (b.Sends[i] produced
	// res.Sends[i]), before any caller is answered. It runs whether or not
	// the callers still wait, so work that must follow a commit (pushing
	// the envelopes to inbox streams) is not lost when a caller's context
	// ends mid-commit. It must not block, and must not modify or keep b's
	// slices beyond the envelopes' ciphertexts, which it may hold.
	Committed func(b *storage.Batch, res *storage.BatchResult)
	// Failed, if set, is called by the writer after a commit that
	// returned an error, before the callers are answered. The commit may
	// have happened all the same (the answer to COMMIT was lost), and the
	// callers' retries would then be replays that write nothing, so work
	// that follows a commit must be done conservatively here (waking the
	// recipients' streams to read storage). It must not block.
	Failed func(b *storage.Batch)
}

// Writer is the group-commit writer. Create it with New, start Run, then
// call Send and Ack from any number of goroutines.
type Writer struct {
	c    Committer
	cfg  Config
	log  *slog.Logger
	reqs chan *request
	done chan struct{}
}

type request struct {
	send *storage.SendOp
	ack  *storage.AckOp
	size int
	// Filled in by the writer before reply is closed.
	sendRes storage.SendResult
	acked   int
	err     error
	reply   chan struct{}
}

// New returns a writer committing through c.
func New(c Committer, cfg Config, log *slog.Logger) *Writer {
	if cfg.MaxEnvelopes <= 0 {
		cfg.MaxEnvelopes = 1000
	}
	if cfg.MaxOps <= 0 {
		cfg.MaxOps = 500
	}
	return &Writer{
		c:    c,
		cfg:  cfg,
		log:  log,
		reqs: make(chan *request, cfg.MaxOps),
		done: make(chan struct{}),
	}
}

// Send commits op durably, together with whatever else is pending, and
// returns its result. If ctx ends while the send is queued or committing,
// Send returns ctx's error; the send may still commit, so callers retry with
// the same idempotency key.
func (w *Writer) Send(ctx context.Context, op *storage.SendOp) (storage.SendResult, error) {
	r := &request{send: op, size: len(op.Envelopes), reply: make(chan struct{})}
	if err := w.submit(ctx, r); err != nil {
		return storage.SendResult{}, err
	}
	return r.sendRes, r.err
}

// Ack deletes a device's envelopes up to op.Cursor in the next group
// commit and returns how many were deleted.
func (w *Writer) Ack(ctx context.Context, op *storage.AckOp) (int, error) {
	r := &request{ack: op, reply: make(chan struct{})}
	if err := w.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.acked, r.err
}

func (w *Writer) submit(ctx context.Context, r *request) error {
	select {
	case <-w.done:
		return ErrClosed
	default:
	}
	select {
	case w.reqs <- r:
	case <-w.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.reply:
		return nil
	case <-w.done:
		// Run has finished every request it took; one it did not take
		// will never be answered.
		select {
		case <-r.reply:
			return nil
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run commits until ctx ends. Work already taken from the queue when ctx
// ends is still committed (with a short grace period) so no caller is left
// waiting; work submitted afterwards fails with ErrClosed.
func (w *Writer) Run(ctx context.Context) error {
	defer close(w.done)
	var carry *request
	for {
		var first *request
		if carry != nil {
			first, carry = carry, nil
		} else {
			select {
			case first = <-w.reqs:
			case <-ctx.Done():
				w.drain()
				return nil
			}
		}
		batch := []*request{first}
		envelopes := first.size
	gather:
		for len(batch) < w.cfg.MaxOps {
			select {
			case r := <-w.reqs:
				if envelopes+r.size > w.cfg.MaxEnvelopes {
					carry = r
					break gather
				}
				batch = append(batch, r)
				envelopes += r.size
			default:
				break gather
			}
		}
		w.commit(ctx, batch, envelopes)
	}
}

// drain answers requests that raced with shutdown.
func (w *Writer) drain() {
	for {
		select {
		case r := <-w.reqs:
			r.err = ErrClosed
			close(r.reply)
		default:
			return
		}
	}
}

func (w *Writer) commit(ctx context.Context, batch []*request, envelopes int) {
	b := &storage.Batch{}
	for _, r := range batch {
		if r.send != nil {
			b.Sends = append(b.Sends, *r.send)
		} else {
			b.Acks = append(b.Acks, *r.ack)
		}
	}
	// A commit under way finishes even if shutdown starts meanwhile.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	start := time.Now()
	res, err := w.c.CommitBatch(cctx, b)
	cancel()
	if w.cfg.Observe != nil {
		w.cfg.Observe(len(batch), envelopes, time.Since(start), err)
	}
	if err != nil {
		w.log.ErrorContext(ctx, "group commit failed", "ops", len(batch), "envelopes", envelopes, "err", err)
		if w.cfg.Failed != nil {
			w.cfg.Failed(b)
		}
	} else if w.cfg.Committed != nil && len(res.Sends) > 0 {
		w.cfg.Committed(b, res)
	}
	si, ai := 0, 0
	for _, r := range batch {
		switch {
		case err != nil:
			r.err = err
		case r.send != nil:
			r.sendRes = res.Sends[si]
			si++
		default:
			r.acked = res.Acks[ai]
			ai++
		}
		close(r.reply)
	}
}
