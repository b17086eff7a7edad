package main

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// faultProxy is a TCP proxy in front of a federation listener. It
// forwards bytes blindly, so mTLS stays end to end between the two nodes,
// and it loses exactly one answer, simulating a receiver that committed a
// transaction but whose answer never reached the origin:
//
//   - client→server bytes are always forwarded in full, and counted per
//     connection;
//   - the first connection on which the client has sent more than
//     armAfter bytes (a large DeliverTransaction is in flight; the TLS
//     handshake and HTTP/2 preface are a few KiB at most) is armed; only
//     one connection is ever armed;
//   - on the armed connection, server→client reads smaller than cutAt
//     are still forwarded: they are HTTP/2 control frames (WINDOW_UPDATE,
//     PING, SETTINGS ack: tens of bytes each, a few coalesced at most);
//     the first read of cutAt bytes or more is the answer (one DATA frame
//     of about 40 bytes per envelope result), which the receiver sends only
//     after its commit. The proxy drops those bytes and closes both sides,
//     so the origin sees the connection fail with no complete answer;
//   - every later connection, and every read of other connections, passes
//     through untouched.
//
// cutAt is kept well below the answer's size so that an answer split over
// two reads is still caught by its first large piece, and a piece forwarded
// before it can never hold the whole DATA frame. The test checks through
// cuts that the fault really happened.
type faultProxy struct {
	ln       net.Listener
	target   string
	armAfter int64
	cutAt    int

	armed atomic.Bool
	cuts  atomic.Int32
	// cutBytes and cutSent are the size of the dropped read and the
	// client bytes sent on that connection, for the test's log.
	cutBytes, cutSent atomic.Int64
	conns             atomic.Int32

	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// startFaultProxy listens on loopback and forwards to target until the
// test ends.
func startFaultProxy(t *testing.T, target string, armAfter int64, cutAt int) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, armAfter: armAfter, cutAt: cutAt, open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track records c as open; it reports false (and closes c) once the
// proxy is closed.
func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == nil {
		c.Close()
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.open, c)
	}
}

func (p *faultProxy) serve(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(server) {
		p.untrack(client)
		return
	}
	defer p.untrack(client, server)
	var sent atomic.Int64
	up := make(chan struct{})
	go func() {
		defer close(up)
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				sent.Add(int64(n))
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Either side ending ends the connection: gRPC does not half-close.
		client.Close()
		server.Close()
	}()
	armed := false
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if !armed && sent.Load() > p.armAfter && p.armed.CompareAndSwap(false, true) {
				armed = true
			}
			if armed && n >= p.cutAt {
				p.cutBytes.Store(int64(n))
				p.cutSent.Store(sent.Load())
				p.cuts.Add(1)
				break
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	client.Close()
	server.Close()
	<-up
}

// close stops the proxy and every connection, and waits for them.
func (p *faultProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.open = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// TestFederationReceiverCrashAfterCommit loses the answer to a committed
// transaction: b stores alice's batch, but the proxy between a and b drops
// b's answer and cuts the connection. a must retry the same transaction
// (same id, same envelopes); b must answer it from its record without
// storing anything again, so that bob gets every envelope exactly once and
// b never even has to judge them as duplicates.
func TestFederationReceiverCrashAfterCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		const count, size = 50, 1024
		a := startFedNode(t, backend, "a.example", nil)
		b := startFedNode(t, backend, "b.example", nil)
		// Armed after 20 KiB from a (the batch is about 58 KiB); the answer
		// to 50 envelopes is about 2.2 KiB, its first large read is cut.
		proxy := startFaultProxy(t, b.ready.Federation, 20<<10, 512)
		addPeer(t, a, b.dir, proxy.addr())
		addPeer(t, b, a.dir, a.ready.Federation)
		a.createUser(t, "alice", "alice-password")
		b.createUser(t, "bob", "bob-password")
		alice := a.login(t, "alice", "alice-password")
		bob := b.login(t, "bob", "bob-password")
		bobStream := inboxStream(t, bob, 0)

		// One send, so that the whole batch is queued in one commit and the
		// sender's first transaction (and its retry) holds all of it.
		req := &clientv1.SendEnvelopesRequest{IdempotencyKey: "crash-after-commit"}
		bodies := map[string]bool{}
		for i := range count {
			body := make([]byte, size)
			copy(body, fmt.Sprintf("alice to bob #%03d ", i))
			bodies[string(body)] = true
			req.Envelopes = append(req.Envelopes, &clientv1.OutgoingEnvelope{RecipientUser: bob.user, RecipientDeviceId: bob.id, Ciphertext: body})
		}
		res, err := alice.c.SendEnvelopes(alice.ctx(t.Context()), req)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		if len(res.EnvelopeIds) != count {
			t.Fatalf("send answered %d ids, want %d", len(res.EnvelopeIds), count)
		}
		sentIDs := map[string]bool{}
		for _, id := range res.EnvelopeIds {
			sentIDs[id] = true
		}

		got := recvN(t, bobStream, count)
		expectNothing(t, bobStream)
		checkOnce := func(what string, got []*clientv1.StreamInboxResponse) {
			t.Helper()
			seen := map[string]bool{}
			for _, m := range got {
				if seen[m.EnvelopeId] {
					t.Errorf("%s: envelope %s delivered twice", what, m.EnvelopeId)
				}
				seen[m.EnvelopeId] = true
				if !sentIDs[m.EnvelopeId] || m.SenderUser != "alice@a.example" || !bodies[string(m.Ciphertext)] {
					t.Errorf("%s: unexpected envelope %s from %s (%d bytes)", what, m.EnvelopeId, m.SenderUser, len(m.Ciphertext))
				}
			}
			if len(seen) != count {
				t.Errorf("%s: %d distinct envelopes, want %d", what, len(seen), count)
			}
		}
		checkOnce("live stream", got)
		// What is stored, read again from the start of the inbox.
		replay := inboxStream(t, bob, 0)
		checkOnce("inbox from cursor 0", recvN(t, replay, count))
		expectNothing(t, replay)

		eventually(t, 10*time.Second, "a's queue for b drained", func() bool {
			d := a.peerState(t, "b.example")
			return d.State == "idle" && d.QueueDepth == 0
		})

		// The path under test really ran: one answer was lost after b's
		// commit, a counted a failed transaction and then retried the same
		// transaction, which b answered from its record.
		if n := proxy.cuts.Load(); n != 1 {
			t.Fatalf("the proxy cut %d answers, want 1 (the fault was not injected; connections: %d)", n, proxy.conns.Load())
		}
		t.Logf("%s: proxy dropped a %d-byte answer read after %d client bytes; %d connections through the proxy",
			backend, proxy.cutBytes.Load(), proxy.cutSent.Load(), proxy.conns.Load())
		if n := a.metric(t, "valise_federation_transactions_total", `peer="b.example"`, `outcome="failed"`); n < 1 {
			t.Errorf("a's failed transactions to b = %v, want >= 1", n)
		}
		if n := a.metric(t, "valise_federation_transactions_total", `peer="b.example"`, `outcome="ok"`); n < 1 {
			t.Errorf("a's answered transactions to b = %v, want >= 1", n)
		}
		if n := a.metric(t, "valise_federation_envelopes_sent_total", `peer="b.example"`, `result="accepted"`); n != count {
			t.Errorf("a's envelopes accepted by b = %v, want %d (the replayed answer)", n, count)
		}
		if n := a.metric(t, "valise_federation_envelopes_sent_total", `peer="b.example"`, `result="duplicate"`); n != 0 {
			t.Errorf("a's envelopes answered as duplicates = %v, want 0", n)
		}
		if n := b.metric(t, "valise_federation_inbound_envelopes_total", `peer="a.example"`, `status="accepted"`); n != count {
			t.Errorf("b accepted %v envelopes from a, want %d", n, count)
		}
		if n := b.metric(t, "valise_federation_inbound_envelopes_total", `peer="a.example"`, `status="duplicate"`); n != 0 {
			t.Errorf("b judged %v envelopes from a as duplicates, want 0: the retry was not a replay of the same transaction", n)
		}
		// valise_federation_inbound_transactions_total{peer,result} counts
		// committed and replayed transactions on the receiver.
		if n := b.metric(t, "valise_federation_inbound_transactions_total", `peer="a.example"`, `result="committed"`); n != 1 {
			t.Errorf("b's committed transactions from a = %v, want 1", n)
		}
		if n := b.metric(t, "valise_federation_inbound_transactions_total", `peer="a.example"`, `result="replayed"`); n < 1 {
			t.Errorf("b's replayed transactions from a = %v, want >= 1", n)
		}
	})
}
