package federation

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
)

// envelopeTo builds a well-formed envelope from alice@a.example.
func envelopeTo(to valise.UserID, dev valise.DeviceID, text string) *federationv1.FederatedEnvelope {
	now := time.Now()
	return &federationv1.FederatedEnvelope{
		EnvelopeId:        string(valise.NewEnvelopeID(now)),
		SenderUser:        "alice@" + string(nodeA),
		SenderDeviceId:    string(valise.NewDeviceID()),
		RecipientUser:     to.String(),
		RecipientDeviceId: string(dev),
		OriginServerTime:  timestamppb.New(now),
		Ciphertext:        []byte(text),
		ExpireTime:        timestamppb.New(now.Add(time.Hour)),
	}
}

func deliverReq(txID string, envs ...*federationv1.FederatedEnvelope) *federationv1.DeliverTransactionRequest {
	return &federationv1.DeliverTransactionRequest{Origin: string(nodeA), Destination: string(nodeB), TransactionId: txID, Envelopes: envs}
}

func statuses(resp *federationv1.DeliverTransactionResponse) []federationv1.EnvelopeStatus {
	var out []federationv1.EnvelopeStatus
	for _, r := range resp.GetResults() {
		out = append(out, r.GetStatus())
	}
	return out
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func TestReplayedTransaction(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	c := a.client(b)
	ctx := t.Context()
	e1, e2 := envelopeTo(bob, bobDev, "one"), envelopeTo(bob, bobDev, "two")

	first, err := c.DeliverTransaction(ctx, deliverReq("t1", e1, e2))
	if err != nil {
		t.Fatal(err)
	}
	accepted := federationv1.EnvelopeStatus_ENVELOPE_STATUS_ACCEPTED
	if got := statuses(first); len(got) != 2 || got[0] != accepted || got[1] != accepted {
		t.Fatalf("statuses = %v", got)
	}
	again, err := c.DeliverTransaction(ctx, deliverReq("t1", e1, e2))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(first, again) {
		t.Errorf("replay answered %v, want %v", again, first)
	}
	// The same id reused for other envelopes (which the protocol forbids)
	// is judged afresh: the envelope seen before is a duplicate, the new
	// one is stored; never another transaction's verdicts.
	three := envelopeTo(bob, bobDev, "three")
	other, err := c.DeliverTransaction(ctx, deliverReq("t1", e1, three))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statuses(other), []federationv1.EnvelopeStatus{federationv1.EnvelopeStatus_ENVELOPE_STATUS_DUPLICATE, accepted}; !slices.Equal(got, want) {
		t.Errorf("the id reused for other envelopes answered %v, want %v", got, want)
	}
	// The same envelopes in another transaction are duplicates.
	dup, err := c.DeliverTransaction(ctx, deliverReq("t2", e1, e2))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dup.GetResults() {
		if r.GetStatus() != federationv1.EnvelopeStatus_ENVELOPE_STATUS_DUPLICATE || r.GetPermanent() {
			t.Errorf("result %v, want DUPLICATE, not permanent", r)
		}
	}
	if got := b.inbox("bob", bobDev); len(got) != 3 {
		t.Errorf("inbox has %d envelopes, want 3 (one, two, three)", len(got))
	}
}

func TestForgedSenderRefused(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	c := a.client(b)
	good := envelopeTo(bob, bobDev, "good")
	for _, sender := range []string{"mallory@" + string(nodeC), "mallory", "Mallory@" + string(nodeA), ""} {
		forged := envelopeTo(bob, bobDev, "forged")
		forged.SenderUser = sender
		_, err := c.DeliverTransaction(t.Context(), deliverReq("t-forged", good, forged))
		wantCode(t, err, codes.PermissionDenied)
	}
	if got := b.inbox("bob", bobDev); len(got) != 0 {
		t.Fatalf("inbox has %d envelopes after a refused transaction", len(got))
	}
	// Nothing was recorded, not even the transaction id.
	resp, err := c.DeliverTransaction(t.Context(), deliverReq("t-forged", good))
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(resp); len(got) != 1 || got[0] != federationv1.EnvelopeStatus_ENVELOPE_STATUS_ACCEPTED {
		t.Errorf("statuses = %v", got)
	}
}

func TestOriginMustBeCertificate(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	c := a.client(b)
	for _, origin := range []string{string(nodeC), string(nodeB), "", "A.EXAMPLE"} {
		req := deliverReq("t", envelopeTo(bob, bobDev, "x"))
		req.Origin = origin
		_, err := c.DeliverTransaction(t.Context(), req)
		wantCode(t, err, codes.PermissionDenied)
		_, err = c.QueryDeviceKeys(t.Context(), &federationv1.QueryDeviceKeysRequest{Origin: origin, User: bob.String()})
		wantCode(t, err, codes.PermissionDenied)
	}
	if got := b.inbox("bob", bobDev); len(got) != 0 {
		t.Fatalf("inbox has %d envelopes", len(got))
	}
}

func TestTransactionLimits(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true, limits: Limits{MaxBatchBytes: 1 << 20}})
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	c := a.client(b)
	many := func(n, size int) []*federationv1.FederatedEnvelope {
		var out []*federationv1.FederatedEnvelope
		for range n {
			out = append(out, envelopeTo(bob, bobDev, strings.Repeat("x", size)))
		}
		return out
	}
	dup := envelopeTo(bob, bobDev, "dup")
	for name, req := range map[string]*federationv1.DeliverTransactionRequest{
		"too many envelopes":   deliverReq("t", many(101, 1)...),
		"too many bytes":       deliverReq("t", many(5, 220<<10)...),
		"no envelopes":         deliverReq("t"),
		"empty transaction id": deliverReq("", many(1, 1)...),
		"long transaction id":  deliverReq(strings.Repeat("t", 129), many(1, 1)...),
		"other destination":    {Origin: string(nodeA), Destination: string(nodeC), TransactionId: "t", Envelopes: many(1, 1)},
		"repeated envelope id": deliverReq("t", dup, dup),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.DeliverTransaction(t.Context(), req)
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	if got := b.inbox("bob", bobDev); len(got) != 0 {
		t.Fatalf("inbox has %d envelopes", len(got))
	}
}

func TestEnvelopeVerdicts(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true, limits: Limits{MaxCiphertextBytes: 64}})
	bobDev := b.addUser("bob")
	carolDev := b.addUser("carol")
	if err := b.store.SetUserActive(t.Context(), "carol", false, nil); err != nil {
		t.Fatal(err)
	}
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	c := a.client(b)
	now := time.Now()
	edit := func(f func(e *federationv1.FederatedEnvelope)) *federationv1.FederatedEnvelope {
		e := envelopeTo(bob, bobDev, "x")
		f(e)
		return e
	}
	const (
		accepted    = federationv1.EnvelopeStatus_ENVELOPE_STATUS_ACCEPTED
		unknown     = federationv1.EnvelopeStatus_ENVELOPE_STATUS_UNKNOWN_RECIPIENT
		deactivated = federationv1.EnvelopeStatus_ENVELOPE_STATUS_RECIPIENT_DEACTIVATED
		tooLarge    = federationv1.EnvelopeStatus_ENVELOPE_STATUS_TOO_LARGE
		invalid     = federationv1.EnvelopeStatus_ENVELOPE_STATUS_INVALID
		expired     = federationv1.EnvelopeStatus_ENVELOPE_STATUS_EXPIRED
	)
	cases := []struct {
		name string
		env  *federationv1.FederatedEnvelope
		want federationv1.EnvelopeStatus
	}{
		{"good", envelopeTo(bob, bobDev, "good"), accepted},
		{"uuid v4", edit(func(e *federationv1.FederatedEnvelope) { e.EnvelopeId = "0190a3c4-5b6d-4e8f-9a0b-1c2d3e4f5a6b" }), invalid},
		{"uppercase uuid", edit(func(e *federationv1.FederatedEnvelope) { e.EnvelopeId = strings.ToUpper(e.EnvelopeId) }), invalid},
		{"not a uuid", edit(func(e *federationv1.FederatedEnvelope) { e.EnvelopeId = "hello" }), invalid},
		{"bad sender device", edit(func(e *federationv1.FederatedEnvelope) { e.SenderDeviceId = "dv1" }), invalid},
		{"bad recipient device", edit(func(e *federationv1.FederatedEnvelope) { e.RecipientDeviceId = "" }), invalid},
		{"recipient of another node", edit(func(e *federationv1.FederatedEnvelope) { e.RecipientUser = "bob@" + string(nodeC) }), invalid},
		{"empty ciphertext", edit(func(e *federationv1.FederatedEnvelope) { e.Ciphertext = nil }), invalid},
		{"no origin time", edit(func(e *federationv1.FederatedEnvelope) { e.OriginServerTime = nil }), invalid},
		{"no expire time", edit(func(e *federationv1.FederatedEnvelope) { e.ExpireTime = nil }), invalid},
		{"expire before origin", edit(func(e *federationv1.FederatedEnvelope) { e.ExpireTime = timestamppb.New(now.Add(-time.Second)) }), invalid},
		{"origin in the future", edit(func(e *federationv1.FederatedEnvelope) {
			e.OriginServerTime = timestamppb.New(now.Add(10 * time.Minute))
			e.ExpireTime = timestamppb.New(now.Add(time.Hour))
		}), invalid},
		{"too large", edit(func(e *federationv1.FederatedEnvelope) { e.Ciphertext = make([]byte, 65) }), tooLarge},
		{"expired", edit(func(e *federationv1.FederatedEnvelope) {
			e.OriginServerTime = timestamppb.New(now.Add(-2 * time.Hour))
			e.ExpireTime = timestamppb.New(now.Add(-time.Hour))
		}), expired},
		{"older than the dedup window", edit(func(e *federationv1.FederatedEnvelope) {
			e.OriginServerTime = timestamppb.New(now.Add(-32 * 24 * time.Hour))
			e.ExpireTime = timestamppb.New(now.Add(time.Hour))
		}), expired},
		{"unknown user", edit(func(e *federationv1.FederatedEnvelope) { e.RecipientUser = "nobody@" + string(nodeB) }), unknown},
		{"unknown device", edit(func(e *federationv1.FederatedEnvelope) { e.RecipientDeviceId = string(valise.NewDeviceID()) }), unknown},
		{"deactivated user", edit(func(e *federationv1.FederatedEnvelope) {
			e.RecipientUser = "carol@" + string(nodeB)
			e.RecipientDeviceId = string(carolDev)
		}), deactivated},
		{"good after the bad", envelopeTo(bob, bobDev, "good too"), accepted},
	}
	var envs []*federationv1.FederatedEnvelope
	for _, tc := range cases {
		envs = append(envs, tc.env)
	}
	resp, err := c.DeliverTransaction(t.Context(), deliverReq("verdicts", envs...))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != len(cases) {
		t.Fatalf("%d results for %d envelopes", len(resp.GetResults()), len(cases))
	}
	for i, tc := range cases {
		r := resp.GetResults()[i]
		wantPermanent := tc.want != accepted
		if r.GetStatus() != tc.want || r.GetPermanent() != wantPermanent || r.GetEnvelopeId() != tc.env.GetEnvelopeId() {
			t.Errorf("%s: result %v, want %v (permanent %v)", tc.name, r, tc.want, wantPermanent)
		}
	}
	if got := b.inbox("bob", bobDev); len(got) != 2 {
		t.Errorf("inbox has %d envelopes, want 2", len(got))
	}
}

func TestPeerRateLimit(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true, limits: Limits{PeerRate: rateOf(3, 0.01)}})
	c := a.client(b)
	for range 3 {
		if _, err := c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{})
	wantRetryInfo(t, err)
}

func wantRetryInfo(t *testing.T, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("error = %v, want ResourceExhausted", err)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return
		}
	}
	t.Errorf("status %v carries no RetryInfo", st)
}

func TestPeerConcurrencyLimit(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true, limits: Limits{PeerConcurrency: 1}})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	inner := grpc.UnaryServerInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-release
		}
		return handler(ctx, req)
	})
	b.inner.Store(&inner)
	c := a.client(b)
	done := make(chan error, 1)
	go func() {
		_, err := c.GetSigningKeys(context.Background(), &federationv1.GetSigningKeysRequest{})
		done <- err
	}()
	<-entered
	_, err := c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{})
	wantRetryInfo(t, err)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{}); err != nil {
		t.Errorf("after the first call ended: %v", err)
	}
}

func TestBlockedPeerRefusedMidConnection(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	c := a.client(b)
	if _, err := c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.SetPeerBlocked(t.Context(), nodeA, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.trust.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{})
	wantCode(t, err, codes.PermissionDenied)
}

func TestClaimChecksAndLimits(t *testing.T) {
	a, b := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	bobDev := b.addUser("bob")
	publish(t, b, "bob", bobDev, 20)
	c := a.client(b)
	req := func() *federationv1.ClaimOneTimeKeyRequest {
		return &federationv1.ClaimOneTimeKeyRequest{
			Origin: string(nodeA), RequesterUser: "alice@" + string(nodeA), RequesterDeviceId: "DVAAAAAAAAAAAAAAAA",
			User: "bob@" + string(nodeB), DeviceId: string(bobDev),
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*federationv1.ClaimOneTimeKeyRequest)
		want codes.Code
	}{
		{"requester of another node", func(r *federationv1.ClaimOneTimeKeyRequest) { r.RequesterUser = "mallory@" + string(nodeC) }, codes.PermissionDenied},
		{"malformed requester", func(r *federationv1.ClaimOneTimeKeyRequest) { r.RequesterUser = "alice" }, codes.InvalidArgument},
		{"malformed requester device", func(r *federationv1.ClaimOneTimeKeyRequest) { r.RequesterDeviceId = "x" }, codes.InvalidArgument},
		{"user of another node", func(r *federationv1.ClaimOneTimeKeyRequest) { r.User = "bob@" + string(nodeC) }, codes.InvalidArgument},
		{"malformed device", func(r *federationv1.ClaimOneTimeKeyRequest) { r.DeviceId = "x" }, codes.InvalidArgument},
		{"unknown user", func(r *federationv1.ClaimOneTimeKeyRequest) { r.User = "nobody@" + string(nodeB) }, codes.NotFound},
		{"unknown device", func(r *federationv1.ClaimOneTimeKeyRequest) { r.DeviceId = string(valise.NewDeviceID()) }, codes.NotFound},
	} {
		r := req()
		tc.edit(r)
		_, err := c.ClaimOneTimeKey(t.Context(), r)
		if status.Code(err) != tc.want {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
	}
	// Burst 6 per (requester device, target device), then limited.
	for range 6 {
		if _, err := c.ClaimOneTimeKey(t.Context(), req()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.ClaimOneTimeKey(t.Context(), req())
	wantRetryInfo(t, err)
	// Another requesting device is not affected.
	other := req()
	other.RequesterDeviceId = "DVBBBBBBBBBBBBBBBB"
	if _, err := c.ClaimOneTimeKey(t.Context(), other); err != nil {
		t.Errorf("other requester device: %v", err)
	}
}
