package main

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
)

// Envelope statuses, short.
const (
	stAccepted    = federationv1.EnvelopeStatus_ENVELOPE_STATUS_ACCEPTED
	stDuplicate   = federationv1.EnvelopeStatus_ENVELOPE_STATUS_DUPLICATE
	stUnknown     = federationv1.EnvelopeStatus_ENVELOPE_STATUS_UNKNOWN_RECIPIENT
	stDeactivated = federationv1.EnvelopeStatus_ENVELOPE_STATUS_RECIPIENT_DEACTIVATED
	stTooLarge    = federationv1.EnvelopeStatus_ENVELOPE_STATUS_TOO_LARGE
	stInvalid     = federationv1.EnvelopeStatus_ENVELOPE_STATUS_INVALID
	stExpired     = federationv1.EnvelopeStatus_ENVELOPE_STATUS_EXPIRED
)

// retryDelay returns the RetryInfo delay of a RESOURCE_EXHAUSTED status.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// patiently calls f until it is not refused by a rate or concurrency
// limit, waiting as RetryInfo asks: the sub-cases that use it are not about
// the limits, which the tight peer rate of the test would otherwise hit.
func patiently[T any](f func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := f()
		d, limited := retryDelay(err)
		if !limited || i == 200 {
			return v, err
		}
		time.Sleep(max(d, 10*time.Millisecond))
	}
}

// evilPeer speaks to b as evil.example, a listed peer with a valid
// certificate that breaks every rule it can.
type evilPeer struct {
	t     *testing.T
	b     *testNode
	c     federationv1.FederationServiceClient
	dev   string
	n     atomic.Int64
	mu    sync.Mutex
	store map[string]string // envelope id → ciphertext, for each one b accepted
}

// env is a well-formed envelope from mallory@evil.example.
func (p *evilPeer) env(rcpt, dev string, body []byte) *federationv1.FederatedEnvelope {
	now := time.Now()
	return &federationv1.FederatedEnvelope{
		EnvelopeId: string(valise.NewEnvelopeID(now)), SenderUser: "mallory@evil.example", SenderDeviceId: p.dev,
		RecipientUser: rcpt, RecipientDeviceId: dev, OriginServerTime: timestamppb.New(now),
		ExpireTime: timestamppb.New(now.Add(time.Hour)), Ciphertext: body,
	}
}

// tx is a transaction of envs under a fresh id.
func (p *evilPeer) tx(envs ...*federationv1.FederatedEnvelope) *federationv1.DeliverTransactionRequest {
	return &federationv1.DeliverTransactionRequest{Origin: "evil.example", Destination: "b.example",
		TransactionId: fmt.Sprintf("evil-%d", p.n.Add(1)), Envelopes: envs}
}

func (p *evilPeer) deliver(req *federationv1.DeliverTransactionRequest) (*federationv1.DeliverTransactionResponse, error) {
	return patiently(func() (*federationv1.DeliverTransactionResponse, error) {
		return p.c.DeliverTransaction(p.t.Context(), req)
	})
}

// refused delivers req and wants the whole transaction refused with code,
// and nothing stored.
func (p *evilPeer) refused(what string, req *federationv1.DeliverTransactionRequest, code codes.Code) {
	p.t.Helper()
	before := p.accepted()
	_, err := p.deliver(req)
	if status.Code(err) != code {
		p.t.Errorf("%s: got %v, want %v", what, err, code)
	}
	if _, ok := retryDelay(err); ok {
		p.t.Errorf("%s: a refusal that is not a rate limit carries RetryInfo: %v", what, err)
	}
	if n := p.accepted(); n != before {
		p.t.Errorf("%s: b accepted %v envelopes from evil", what, n-before)
	}
}

// judged delivers req and wants one result per envelope with the given
// statuses; it records the accepted envelopes as stored.
func (p *evilPeer) judged(what string, req *federationv1.DeliverTransactionRequest, want ...federationv1.EnvelopeStatus) *federationv1.DeliverTransactionResponse {
	p.t.Helper()
	before := p.accepted()
	resp, err := p.deliver(req)
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	wantResults(p.t, what, req, resp, want...)
	fresh := 0
	for i, st := range want {
		if st == stAccepted {
			p.stored(req.Envelopes[i])
			fresh++
		}
	}
	if n := p.accepted(); n != before+float64(fresh) {
		p.t.Errorf("%s: b counted %v envelopes from evil as accepted, want %d", what, n-before, fresh)
	}
	return resp
}

func (p *evilPeer) stored(e *federationv1.FederatedEnvelope) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.store[e.EnvelopeId] = string(e.Ciphertext)
}

// accepted is b's count of envelopes from evil it stored (the counter is
// incremented before DeliverTransaction answers).
func (p *evilPeer) accepted() float64 {
	return p.b.metric(p.t, "valise_federation_inbound_envelopes_total", `peer="evil.example"`, `status="accepted"`)
}

// wantResults checks resp against req: one result per envelope, in order,
// with the envelope's id, the wanted status and the matching permanent flag.
func wantResults(t *testing.T, what string, req *federationv1.DeliverTransactionRequest, resp *federationv1.DeliverTransactionResponse, want ...federationv1.EnvelopeStatus) {
	t.Helper()
	if len(resp.Results) != len(want) {
		t.Fatalf("%s: %d results, want %d", what, len(resp.Results), len(want))
	}
	for i, r := range resp.Results {
		permanent := want[i] != stAccepted && want[i] != stDuplicate
		if r.EnvelopeId != req.Envelopes[i].EnvelopeId || r.Status != want[i] || r.Permanent != permanent {
			t.Errorf("%s: result %d = %v; want %s %v permanent=%v", what, i, r, req.Envelopes[i].EnvelopeId, want[i], permanent)
		}
	}
}

// inboxWatch records when each envelope of one device's live stream
// arrived.
type inboxWatch struct {
	mu sync.Mutex
	at map[string]time.Time
}

func watchInbox(t *testing.T, d *device) *inboxWatch {
	w := &inboxWatch{at: map[string]time.Time{}}
	ch := inboxStream(t, d, 0)
	go func() {
		for m := range ch {
			w.mu.Lock()
			w.at[m.EnvelopeId] = time.Now()
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *inboxWatch) arrived(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.at[id]
	return at, ok
}

// steadySender sends one envelope from alice to bob every interval, each
// its own send, until stopped; it records when each was sent.
type steadySender struct {
	mu   sync.Mutex
	sent map[string]time.Time
	errs []error
	stop chan struct{}
	done chan struct{}
}

func startSteadySender(t *testing.T, from, to *device, every time.Duration) *steadySender {
	s := &steadySender{sent: map[string]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			at := time.Now()
			res, err := from.c.SendEnvelopes(from.ctx(t.Context()), &clientv1.SendEnvelopesRequest{
				IdempotencyKey: fmt.Sprintf("steady-%d", i),
				Envelopes:      []*clientv1.OutgoingEnvelope{{RecipientUser: to.user, RecipientDeviceId: to.id, Ciphertext: fedBody("a", i)}},
			})
			s.mu.Lock()
			if err != nil {
				s.errs = append(s.errs, err)
			} else {
				s.sent[res.EnvelopeIds[0]] = at
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// since returns the envelopes sent at or after t.
func (s *steadySender) since(t time.Time) map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]time.Time{}
	for id, at := range s.sent {
		if !at.Before(t) {
			out[id] = at
		}
	}
	return out
}

// TestFederationAdversarialPeer lets a listed peer with a valid
// certificate, evil.example, misbehave against b.example in every way the
// wire allows, while a.example sends to bob@b.example throughout. Each
// answer must be the documented one, b must store only the envelopes it
// answered ACCEPTED (evil's valid envelopes for bob), a's envelopes must
// keep arriving promptly during a flood, and b must stay healthy.
func TestFederationAdversarialPeer(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		b := startFedNode(t, backend, "b.example", func(c *config.Config) {
			c.Federation.PeerRate = config.Rate{Burst: 20, PerSecond: 10}
			c.Federation.KeyQueryRate = config.Rate{Burst: 5, PerSecond: 1}
		})
		a := startFedNode(t, backend, "a.example", nil)
		peerAll(t, a, b)
		evilDir := peerDir(t, "evil.example") // never started
		addPeer(t, b, evilDir, "127.0.0.1:1")
		evil := &evilPeer{t: t, b: b, c: b.asPeer(t, evilDir), dev: string(valise.NewDeviceID()), store: map[string]string{}}

		b.createUser(t, "bob", "bob-password")
		b.createUser(t, "gone", "gone-password")
		a.createUser(t, "alice", "alice-password")
		bob := b.login(t, "bob", "bob-password")
		gone := b.login(t, "gone", "gone-password")
		alice := a.login(t, "alice", "alice-password")
		if _, err := b.admin.DeactivateUser(t.Context(), &adminv1.DeactivateUserRequest{User: "gone"}); err != nil {
			t.Fatal(err)
		}
		publishKeys(t, bob, 1, 3)
		watch := watchInbox(t, bob)
		steady := startSteadySender(t, alice, bob, 200*time.Millisecond)
		defer func() {
			select {
			case <-steady.stop:
			default:
				close(steady.stop)
			}
			<-steady.done
		}()
		bobUser := "bob@b.example"
		valid := func(body string) *federationv1.FederatedEnvelope { return evil.env(bobUser, bob.id, []byte(body)) }
		calls := func(code string) float64 {
			return b.metric(t, "valise_federation_inbound_calls_total", `method="DeliverTransaction"`, `code="`+code+`"`)
		}

		// Larger than the listener's maximum message: refused before it is
		// decoded (even the forged origin is never read), without RetryInfo.
		exhaustedBefore, deniedBefore := calls("ResourceExhausted"), calls("PermissionDenied")
		huge := evil.tx(valid(strings.Repeat("x", 6<<20)))
		huge.Origin = "a.example"
		var many []*federationv1.FederatedEnvelope
		for range 30 {
			many = append(many, valid(strings.Repeat("y", 200<<10)))
		}
		for what, req := range map[string]*federationv1.DeliverTransactionRequest{
			"one 6 MiB ciphertext": huge, "30 ciphertexts of 200 KiB": evil.tx(many...),
		} {
			_, err := evil.c.DeliverTransaction(t.Context(), req)
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("%s: got %v, want ResourceExhausted", what, err)
			} else if _, ok := retryDelay(err); ok {
				t.Errorf("%s: the message size refusal carries RetryInfo (it is permanent for the batch)", what)
			}
		}
		if calls("ResourceExhausted") != exhaustedBefore || calls("PermissionDenied") != deniedBefore {
			t.Errorf("an oversized request reached the federation service")
		}

		// Whole-transaction refusals, all first tried under one id: a refused
		// transaction records nothing, so that id is judged afresh below.
		refusedID := "evil-refused"
		with := func(id string, req *federationv1.DeliverTransactionRequest) *federationv1.DeliverTransactionRequest {
			req.TransactionId = id
			return req
		}
		var lots []*federationv1.FederatedEnvelope
		for i := range 10000 {
			lots = append(lots, valid(fmt.Sprintf("lot %05d", i)))
		}
		evil.refused("10,000 envelopes", with(refusedID, evil.tx(lots...)), codes.InvalidArgument)
		var fat []*federationv1.FederatedEnvelope
		for range 20 {
			fat = append(fat, valid(strings.Repeat("z", 220<<10))) // 4.4 MiB in all, each under 256 KiB
		}
		evil.refused("4.4 MiB of ciphertext", with(refusedID, evil.tx(fat...)), codes.InvalidArgument)
		wrongDest := with(refusedID, evil.tx(valid("wrong destination")))
		wrongDest.Destination = "a.example"
		evil.refused("destination a.example", wrongDest, codes.InvalidArgument)
		evil.refused("no envelopes", with(refusedID, evil.tx()), codes.InvalidArgument)
		twice := valid("twice")
		evil.refused("an envelope id twice", with(refusedID, evil.tx(twice, twice)), codes.InvalidArgument)
		evil.refused("empty transaction id", with("", evil.tx(valid("no id"))), codes.InvalidArgument)
		evil.refused("129-byte transaction id", with(strings.Repeat("i", 129), evil.tx(valid("long id"))), codes.InvalidArgument)

		// Envelopes in another node's name, or speaking as another node:
		// the whole transaction is refused, even its valid envelopes.
		foreign := valid("in alice's name")
		foreign.SenderUser = "alice@a.example"
		keep := valid("valid, but in a refused transaction")
		evil.refused("a sender of a.example", with(refusedID, evil.tx(keep, foreign)), codes.PermissionDenied)
		bare := valid("bare sender")
		bare.SenderUser = "mallory"
		evil.refused("a bare sender", with(refusedID, evil.tx(bare)), codes.PermissionDenied)
		evil.refused("a sender of a.example among 10,000", with(refusedID, evil.tx(append(lots[:9999:9999], foreign)...)), codes.PermissionDenied)
		forged := with(refusedID, evil.tx(keep))
		forged.Origin = "a.example"
		evil.refused("origin a.example with evil's certificate", forged, codes.PermissionDenied)
		forged.Origin = ""
		evil.refused("no origin", forged, codes.PermissionDenied)
		// The checks run in the documented order.
		order := with(refusedID, evil.tx(foreign))
		order.Destination = "c.example"
		evil.refused("wrong destination and a foreign sender", order, codes.InvalidArgument)
		evil.judged("the refused id, retried with a valid envelope", with(refusedID, evil.tx(keep)), stAccepted)

		// Recipients b does not have, or must not take from evil.
		recipients := evil.tx(
			evil.env("nobody@b.example", bob.id, []byte("to nobody")),
			evil.env(bobUser, string(valise.NewDeviceID()), []byte("to a device bob does not have")),
			evil.env("gone@b.example", gone.id, []byte("to a deactivated user")),
			evil.env("alice@a.example", alice.id, []byte("to a user of a.example")),
			evil.env("bob@evil.example", bob.id, []byte("to a user of evil.example")),
			valid("to bob, valid"),
		)
		first := evil.judged("recipients", recipients, stUnknown, stUnknown, stDeactivated, stInvalid, stInvalid, stAccepted)

		// A replay gets the same answer and stores nothing. The same envelope
		// id in a new transaction is a duplicate, whatever its content.
		replayed := b.metric(t, "valise_federation_inbound_transactions_total", `peer="evil.example"`, `result="replayed"`)
		before := evil.accepted()
		again, err := evil.deliver(recipients)
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		if !proto.Equal(first, again) {
			t.Errorf("replay answered %v; first answer %v", again, first)
		}
		if evil.accepted() != before {
			t.Errorf("replay: b stored envelopes again")
		}
		if n := b.metric(t, "valise_federation_inbound_transactions_total", `peer="evil.example"`, `result="replayed"`); n != replayed+1 {
			t.Errorf("b's replayed transactions from evil went from %v to %v, want one more", replayed, n)
		}
		// An origin that reuses a transaction id for other envelopes (here as
		// many as the first time) breaks the protocol; b must never answer
		// them with the first transaction's verdicts (which would tell the
		// origin that envelopes b never stored were delivered): it judges
		// them afresh, as a new transaction. The one envelope accepted the
		// first time is a duplicate now.
		other := evil.tx(recipients.Envelopes[5], valid("same id, other envelopes 1"), valid("2"), valid("3"), valid("4"), valid("5"))
		other.TransactionId = recipients.TransactionId
		evil.judged("the same id reused for other envelopes", other, stDuplicate, stAccepted, stAccepted, stAccepted, stAccepted, stAccepted)
		dup := proto.Clone(recipients.Envelopes[5]).(*federationv1.FederatedEnvelope)
		dup.Ciphertext = []byte("same id, other content")
		evil.judged("the same envelope id in a new transaction", evil.tx(dup, valid("new")), stDuplicate, stAccepted)

		// Malformed envelopes, each judged on its own next to a valid one.
		now := time.Now()
		mal := func(f func(e *federationv1.FederatedEnvelope)) *federationv1.FederatedEnvelope {
			e := valid("malformed")
			f(e)
			return e
		}
		evil.judged("malformed envelopes", evil.tx(
			mal(func(e *federationv1.FederatedEnvelope) { e.EnvelopeId = "not-a-uuid" }),
			mal(func(e *federationv1.FederatedEnvelope) { e.EnvelopeId = strings.ToUpper(e.EnvelopeId) }),
			mal(func(e *federationv1.FederatedEnvelope) { e.EnvelopeId = "0190a6e4-1c2d-4e5f-8a6b-7c8d9e0f1a2b" }), // version 4
			mal(func(e *federationv1.FederatedEnvelope) { e.ExpireTime = timestamppb.New(now.Add(-time.Minute)) }),
			mal(func(e *federationv1.FederatedEnvelope) { e.ExpireTime = e.OriginServerTime }),
			mal(func(e *federationv1.FederatedEnvelope) {
				e.OriginServerTime, e.ExpireTime = timestamppb.New(now.Add(time.Hour)), timestamppb.New(now.Add(2*time.Hour))
			}),
			mal(func(e *federationv1.FederatedEnvelope) { e.Ciphertext = nil }),
			mal(func(e *federationv1.FederatedEnvelope) { e.OriginServerTime = nil }),
			mal(func(e *federationv1.FederatedEnvelope) { e.ExpireTime = nil }),
			mal(func(e *federationv1.FederatedEnvelope) { e.RecipientDeviceId = "../../etc/passwd" }),
			mal(func(e *federationv1.FederatedEnvelope) { e.SenderDeviceId = "" }),
			mal(func(e *federationv1.FederatedEnvelope) { e.RecipientUser = "bob" }),
			mal(func(e *federationv1.FederatedEnvelope) { e.Ciphertext = bytes.Repeat([]byte("L"), 256<<10+1) }),
			mal(func(e *federationv1.FederatedEnvelope) {
				e.OriginServerTime, e.ExpireTime = timestamppb.New(now.Add(-2*time.Hour)), timestamppb.New(now.Add(-time.Hour))
			}),
			mal(func(e *federationv1.FederatedEnvelope) {
				e.OriginServerTime = timestamppb.New(now.Add(-32 * 24 * time.Hour))
			}),
			valid("valid among malformed"),
		), stInvalid, stInvalid, stInvalid, stInvalid, stInvalid, stInvalid, stInvalid, stInvalid, stInvalid, stInvalid,
			stInvalid, stInvalid, stTooLarge, stExpired, stExpired, stAccepted)

		// A flood of concurrent calls beyond evil's rate: some are refused
		// with RetryInfo; every call let through is answered properly; a has
		// its own bucket, so its envelopes keep arriving.
		aLimited := a.metric(t, "valise_federation_transactions_total", `peer="b.example"`, `outcome="rate_limited"`)
		floodStart := time.Now()
		var stop atomic.Bool
		var ok, limited, noDelay, odd atomic.Int32
		var wg sync.WaitGroup
		var floodMu sync.Mutex
		var floodErrs []error
		for range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					req := evil.tx(valid("flood"))
					resp, err := evil.c.DeliverTransaction(t.Context(), req)
					switch d, hasRetry := retryDelay(err); {
					case err == nil && len(resp.Results) == 1 && resp.Results[0].Status == stAccepted:
						ok.Add(1)
						evil.stored(req.Envelopes[0])
					case hasRetry && d > 0:
						limited.Add(1)
					case status.Code(err) == codes.ResourceExhausted:
						noDelay.Add(1)
					default:
						odd.Add(1)
						floodMu.Lock()
						floodErrs = append(floodErrs, fmt.Errorf("%v %v", resp, err))
						floodMu.Unlock()
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		for time.Since(floodStart) < 2*time.Second || len(steady.since(floodStart)) < 20 {
			if time.Since(floodStart) > 30*time.Second {
				t.Errorf("a sent only %d envelopes during 30 s of flood", len(steady.since(floodStart)))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop.Store(true)
		wg.Wait()
		floodEnd := time.Now()
		t.Logf("%s: flood of %v: %d calls let through, %d refused with RetryInfo", backend, floodEnd.Sub(floodStart).Round(time.Millisecond), ok.Load(), limited.Load())
		if limited.Load() == 0 || ok.Load() == 0 || noDelay.Load() != 0 || odd.Load() != 0 {
			t.Errorf("flood: %d ok, %d limited with RetryInfo, %d limited without a delay, %d other (%v); want some ok, some limited, nothing else",
				ok.Load(), limited.Load(), noDelay.Load(), odd.Load(), floodErrs)
		}
		if n := evil.accepted(); n != float64(len(evil.store)) {
			t.Errorf("b counts %v envelopes accepted from evil; it answered ACCEPTED for %d", n, len(evil.store))
		}
		during := steady.since(floodStart)
		var slowest time.Duration
		eventually(t, 10*time.Second, "a's envelopes sent during the flood arrive", func() bool {
			for id := range during {
				if _, ok := watch.arrived(id); !ok {
					return false
				}
			}
			return true
		})
		for id, sentAt := range during {
			at, _ := watch.arrived(id)
			slowest = max(slowest, at.Sub(sentAt))
		}
		t.Logf("%s: %d envelopes from a during the flood, slowest delivered in %v", backend, len(during), slowest.Round(time.Millisecond))
		if slowest > 5*time.Second {
			t.Errorf("an envelope from a took %v to arrive during the flood", slowest)
		}
		if n := a.metric(t, "valise_federation_transactions_total", `peer="b.example"`, `outcome="rate_limited"`); n != aLimited {
			t.Errorf("a was rate limited %v times during evil's flood: peers must not share a bucket", n-aLimited)
		}

		// Key lookups: a flood hits the peer's key-query rate (and the
		// peer rate), each refusal with RetryInfo; the answers let through
		// are bob's device list, signed by b.
		time.Sleep(2100 * time.Millisecond) // evil's peer bucket refills
		keys, err := patiently(func() (*federationv1.GetSigningKeysResponse, error) {
			return evil.c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{})
		})
		if err != nil || len(keys.SigningKeys) == 0 {
			t.Fatalf("GetSigningKeys: %v, %v", keys, err)
		}
		var kOK, kKeyLimited, kLimited, kOther atomic.Int32
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 6 {
					resp, err := evil.c.QueryDeviceKeys(t.Context(), &federationv1.QueryDeviceKeysRequest{Origin: "evil.example", User: bobUser})
					d, hasRetry := retryDelay(err)
					switch {
					case err == nil && checkDeviceKeys(resp, keys, bobUser, bob.id) == nil:
						kOK.Add(1)
					case hasRetry && d > 0 && strings.Contains(status.Convert(err).Message(), "key queries"):
						kKeyLimited.Add(1)
					case hasRetry && d > 0:
						kLimited.Add(1)
					default:
						kOther.Add(1)
						t.Errorf("key query flood: %v (checked: %v)", err, checkDeviceKeys(resp, keys, bobUser, bob.id))
					}
				}
			}()
		}
		wg.Wait()
		t.Logf("%s: key query flood: %d answered, %d refused by the key-query rate, %d by the peer rate", backend, kOK.Load(), kKeyLimited.Load(), kLimited.Load())
		if kOK.Load() == 0 || kKeyLimited.Load() == 0 || kOther.Load() != 0 {
			t.Errorf("key query flood: %d ok, %d key-limited, %d peer-limited, %d other", kOK.Load(), kKeyLimited.Load(), kLimited.Load(), kOther.Load())
		}
		nobody, err := patiently(func() (*federationv1.QueryDeviceKeysResponse, error) {
			return evil.c.QueryDeviceKeys(t.Context(), &federationv1.QueryDeviceKeysRequest{Origin: "evil.example", User: "nobody@b.example"})
		})
		if err := checkDeviceKeys(nobody, keys, "nobody@b.example", ""); err != nil {
			t.Errorf("keys of an unknown user: %v (%v)", err, nobody)
		}
		for user, code := range map[string]codes.Code{"alice@a.example": codes.InvalidArgument, "bob": codes.InvalidArgument} {
			_, err := patiently(func() (*federationv1.QueryDeviceKeysResponse, error) {
				return evil.c.QueryDeviceKeys(t.Context(), &federationv1.QueryDeviceKeysRequest{Origin: "evil.example", User: user})
			})
			if status.Code(err) != code {
				t.Errorf("QueryDeviceKeys %q: got %v, want %v", user, err, code)
			}
		}
		_, err = patiently(func() (*federationv1.QueryDeviceKeysResponse, error) {
			return evil.c.QueryDeviceKeys(t.Context(), &federationv1.QueryDeviceKeysRequest{Origin: "a.example", User: bobUser})
		})
		wantCode(t, err, codes.PermissionDenied)
		for requester, code := range map[string]codes.Code{"alice@a.example": codes.PermissionDenied, "mallory": codes.InvalidArgument} {
			_, err := patiently(func() (*federationv1.ClaimOneTimeKeyResponse, error) {
				return evil.c.ClaimOneTimeKey(t.Context(), &federationv1.ClaimOneTimeKeyRequest{Origin: "evil.example",
					RequesterUser: requester, RequesterDeviceId: alice.id, User: bobUser, DeviceId: bob.id})
			})
			if status.Code(err) != code {
				t.Errorf("ClaimOneTimeKey for requester %q: got %v, want %v", requester, err, code)
			}
		}
		if cnt, err := bob.c.CountOneTimeKeys(bob.ctx(t.Context()), &clientv1.CountOneTimeKeysRequest{}); err != nil || cnt.OneTimeKeyCount != 3 {
			t.Errorf("bob's one-time keys after refused claims: %v, %v; want 3", cnt, err)
		}

		// b is still healthy: it serves clients, and a's envelopes still
		// arrive.
		close(steady.stop)
		<-steady.done
		final := send(t, alice, "final", []*device{bob}, []byte("final"))[0]
		eventually(t, 10*time.Second, "a's final envelope arrives", func() bool { _, ok := watch.arrived(final); return ok })
		hc := healthpb.NewHealthClient(b.dial(t))
		for _, svc := range []string{"", clientv1.ClientService_ServiceDesc.ServiceName} {
			h, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("b's health %q: %v, %v; want SERVING", svc, h, err)
			}
		}
		select {
		case err := <-b.done:
			b.done <- err
			t.Fatalf("b stopped serving: %v\n%s", err, b.logs)
		default:
		}
		if len(steady.errs) != 0 {
			t.Errorf("a's sends failed: %v", steady.errs)
		}

		// Everything bob's inbox holds, read from the start: each of a's
		// envelopes and each envelope b answered ACCEPTED to evil, once,
		// and nothing else.
		fromA := steady.since(time.Time{})
		fromA[final] = time.Now()
		all := inboxStream(t, bob, 0)
		got := recvN(t, all, len(fromA)+len(evil.store))
		expectNothing(t, all)
		seen := map[string]bool{}
		for _, m := range got {
			switch {
			case seen[m.EnvelopeId]:
				t.Errorf("envelope %s from %s is in bob's inbox twice", m.EnvelopeId, m.SenderUser)
			case m.SenderUser == "alice@a.example" && !fromA[m.EnvelopeId].IsZero():
			case m.SenderUser == "mallory@evil.example" && evil.store[m.EnvelopeId] == string(m.Ciphertext):
			default:
				t.Errorf("bob's inbox holds %s from %s (%d bytes), which b never accepted", m.EnvelopeId, m.SenderUser, len(m.Ciphertext))
			}
			seen[m.EnvelopeId] = true
		}
		t.Logf("%s: bob's inbox: %d envelopes from a, %d from evil", backend, len(fromA), len(evil.store))
	})
}

// checkDeviceKeys checks a QueryDeviceKeys answer: signed by one of keys
// over the documented context, for user of b.example, listing exactly the
// device dev ("" for none).
func checkDeviceKeys(resp *federationv1.QueryDeviceKeysResponse, keys *federationv1.GetSigningKeysResponse, user, dev string) error {
	if resp == nil {
		return fmt.Errorf("no answer")
	}
	var pub ed25519.PublicKey
	for _, k := range keys.SigningKeys {
		if k.KeyId == resp.SigningKeyId {
			pub = k.PublicKey
		}
	}
	msg := append([]byte("valise/federation/v1/device-keys\x00"), resp.SignedDeviceKeys...)
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, msg, resp.Signature) {
		return fmt.Errorf("signature by %q does not verify", resp.SigningKeyId)
	}
	var list federationv1.DeviceKeyList
	if err := proto.Unmarshal(resp.SignedDeviceKeys, &list); err != nil {
		return err
	}
	if list.Node != "b.example" || list.User != user || time.Since(list.IssuedTime.AsTime()).Abs() > time.Minute {
		return fmt.Errorf("list of %s at %s issued %v", list.User, list.Node, list.IssuedTime.AsTime())
	}
	var devs []string
	for _, d := range list.Devices {
		devs = append(devs, d.DeviceId)
	}
	if want := strings.Fields(dev); fmt.Sprint(devs) != fmt.Sprint(want) {
		return fmt.Errorf("devices %v, want %v", devs, want)
	}
	return nil
}
