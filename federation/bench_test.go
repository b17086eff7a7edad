package federation

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
)

// BenchmarkDeliverTransaction measures the receiving side of federation:
// transactions of 100 envelopes of 1 KiB from a peer over mTLS on
// loopback, each committed durably (SQLite) before its answer. It reports
// envelopes per second.
//
//	go test -run XXX -bench DeliverTransaction -benchtime 3s -count 5 ./federation
func BenchmarkDeliverTransaction(b *testing.B) {
	const perTx = 100
	na, nb := pair(b, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true, limits: Limits{
		PeerRate: rateOf(1_000_000, 1_000_000),
	}})
	bobDev := nb.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	c := na.client(nb)
	body := make([]byte, 1024)
	_, _ = rand.Read(body)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		envs := make([]*federationv1.FederatedEnvelope, perTx)
		for j := range envs {
			envs[j] = envelopeTo(bob, bobDev, "")
			envs[j].Ciphertext = body
		}
		req := deliverReq(fmt.Sprintf("bench-%d", i), envs...)
		b.StartTimer()
		resp, err := c.DeliverTransaction(b.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.GetResults()) != perTx || resp.GetResults()[0].GetStatus() != federationv1.EnvelopeStatus_ENVELOPE_STATUS_ACCEPTED {
			b.Fatalf("answer %v", resp.GetResults()[0])
		}
	}
	b.ReportMetric(float64(b.N*perTx)/b.Elapsed().Seconds(), "envelopes/s")
}
