package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/client"
	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
)

// TestFederationThreeNodes runs three nodes, each with its own CA, all
// peers of each other: envelopes flow every way; a peer cannot deliver
// in another node's name or for another node's users; certificates that
// do not prove a listed peer are refused at the handshake.
func TestFederationThreeNodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		a := startFedNode(t, backend, "a.example", nil)
		b := startFedNode(t, backend, "b.example", nil)
		c := startFedNode(t, backend, "c.example", nil)
		peerAll(t, a, b, c)
		nodes := []*testNode{a, b, c}
		users := []string{"alice", "bob", "carol"}
		devs := make([]*device, 3)
		streams := make([]<-chan *clientv1.StreamInboxResponse, 3)
		for i, n := range nodes {
			n.createUser(t, users[i], users[i]+"-password")
			devs[i] = n.login(t, users[i], users[i]+"-password")
			streams[i] = inboxStream(t, devs[i], 0)
		}
		alice2 := a.login(t, "alice", "alice-password")

		// Each sends one envelope to the two others (alice also to her
		// other device, locally, in the same send).
		for i, from := range devs {
			var to []*device
			for j, d := range devs {
				if j != i {
					to = append(to, d)
				}
			}
			if i == 0 {
				to = append(to, alice2)
			}
			send(t, from, "hello-"+users[i], to, []byte("hello from "+users[i]))
		}
		for i, ch := range streams {
			got := map[string]string{}
			for _, m := range recvN(t, ch, 2) {
				got[m.SenderUser] = string(m.Ciphertext)
			}
			for j, u := range users {
				if j == i {
					continue
				}
				from := u + "@" + nodes[j].cfg.Node.Name
				if got[from] != "hello from "+u {
					t.Errorf("%s received %v; want %q from %s", devs[i].user, got, "hello from "+u, from)
				}
			}
		}
		if m := recvN(t, inboxStream(t, alice2, 0), 1)[0]; string(m.Ciphertext) != "hello from alice" {
			t.Errorf("alice's other device got %q", m.Ciphertext)
		}
		eventually(t, 10*time.Second, "a's delivery state for b", func() bool {
			d := a.peerState(t, "b.example")
			return d.State == "idle" && d.LastSuccessTime != nil && d.QueueDepth == 0
		})

		// c cannot deliver envelopes from a's users to b, nor speak as a.
		fc := b.asPeer(t, c.dir)
		forged := &federationv1.DeliverTransactionRequest{
			Origin: "c.example", Destination: "b.example", TransactionId: "forged-1",
			Envelopes: []*federationv1.FederatedEnvelope{{
				EnvelopeId: string(valise.NewEnvelopeID(time.Now())), SenderUser: "alice@a.example", SenderDeviceId: devs[0].id,
				RecipientUser: devs[1].user, RecipientDeviceId: devs[1].id, OriginServerTime: timestamppb.Now(),
				ExpireTime: timestamppb.New(time.Now().Add(time.Hour)), Ciphertext: []byte("forged"),
			}},
		}
		_, err := fc.DeliverTransaction(t.Context(), forged)
		wantCode(t, err, codes.PermissionDenied)
		forged.Origin, forged.TransactionId = "a.example", "forged-2"
		forged.Envelopes[0].EnvelopeId = string(valise.NewEnvelopeID(time.Now()))
		_, err = fc.DeliverTransaction(t.Context(), forged)
		wantCode(t, err, codes.PermissionDenied)
		// Nor envelopes from b's users to a.
		forged = proto.Clone(forged).(*federationv1.DeliverTransactionRequest)
		forged.Origin, forged.Destination, forged.TransactionId = "c.example", "a.example", "forged-3"
		forged.Envelopes[0].SenderUser, forged.Envelopes[0].SenderDeviceId = devs[1].user, devs[1].id
		forged.Envelopes[0].RecipientUser, forged.Envelopes[0].RecipientDeviceId = devs[0].user, devs[0].id
		_, err = a.asPeer(t, c.dir).DeliverTransaction(t.Context(), forged)
		wantCode(t, err, codes.PermissionDenied)
		expectNothing(t, streams[1])
		expectNothing(t, streams[0])

		// Handshakes that do not prove a listed peer fail before any RPC.
		caC, err := pki.LoadCA(filepath.Join(c.dir, "ca.crt"), filepath.Join(c.dir, "ca.key"))
		if err != nil {
			t.Fatal(err)
		}
		leaf := func(name string, validity time.Duration) tls.Certificate {
			l, err := caC.IssueServer([]string{name}, nil, validity)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := l.TLSCertificate()
			if err != nil {
				t.Fatal(err)
			}
			return cert
		}
		bCA := filepath.Join(b.dir, "ca.crt")
		for _, tc := range []struct {
			name string
			cert tls.Certificate
		}{
			{"c's CA certifying a.example", leaf("a.example", time.Hour)},
			{"an expired certificate of c", leaf("c.example", -time.Minute)},
			{"c's CA certifying an unlisted name", leaf("d.example", time.Hour)},
		} {
			fc := federationClient(t, b.ready.Federation, "b.example", bCA, tc.cert)
			_, err := fc.GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{})
			if grpcCode(err) != codes.Unavailable {
				t.Errorf("%s: got %v, want a refused handshake (Unavailable)", tc.name, err)
			}
		}
		roots := x509.NewCertPool()
		caB, _ := os.ReadFile(bCA)
		roots.AppendCertsFromPEM(caB)
		for name, creds := range map[string]credentials.TransportCredentials{
			"TLS 1.2": credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, RootCAs: roots,
				ServerName: "b.example", Certificates: []tls.Certificate{nodeCert(t, c.dir)}}),
			"plaintext": insecure.NewCredentials(),
		} {
			conn, err := grpc.NewClient(b.ready.Federation, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			_, err = federationv1.NewFederationServiceClient(conn).GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{})
			conn.Close()
			if grpcCode(err) != codes.Unavailable {
				t.Errorf("%s: got %v, want a refused connection (Unavailable)", name, err)
			}
		}
	})
}

// TestFederationEncryptedConversation is the user's view: alice on
// a.example and bob on b.example talk end to end with the client SDK; the
// keys of the other node's user come through the federation, signed by
// that node, and are pinned like local ones.
func TestFederationEncryptedConversation(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		a := startFedNode(t, backend, "a.example", nil)
		b := startFedNode(t, backend, "b.example", nil)
		peerAll(t, a, b)
		a.createUser(t, "alice", "alice-password")
		b.createUser(t, "bob", "bob-password")
		alice := a.sdkLogin(t, "alice", "alice-password", 4)
		bob := b.sdkLogin(t, "bob", "bob-password", 4)

		if _, err := alice.Send(t.Context(), "bob@b.example", []byte("hello from a"), client.SendOptions{}); err != nil {
			t.Fatalf("alice sends to bob@b.example: %v", err)
		}
		var got []client.Message
		eventually(t, 20*time.Second, "bob reads alice's message", func() bool {
			got = append(got, drain(t, bob)...)
			return len(got) > 0
		})
		wantBodies(t, "bob", got, "alice@a.example: hello from a")
		if _, err := bob.Send(t.Context(), "alice@a.example", []byte("hello from b"), client.SendOptions{}); err != nil {
			t.Fatalf("bob answers: %v", err)
		}
		got = nil
		eventually(t, 20*time.Second, "alice reads bob's answer", func() bool {
			got = append(got, drain(t, alice)...)
			return len(got) > 0
		})
		wantBodies(t, "alice", got, "bob@b.example: hello from b")

		// alice pinned bob's device from b's signed answer.
		devs, err := alice.Devices(t.Context(), "bob@b.example")
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 1 || devs[0].ID != bob.DeviceID() || devs[0].Trust != client.TrustPinned {
			t.Errorf("alice's view of bob's devices: %+v; want bob's one device, pinned", devs)
		}

		// A node that is not a peer: no keys, no sends.
		if _, err := a.admin.BlockPeer(t.Context(), &adminv1.BlockPeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(t.Context(), "bob@b.example", []byte("blocked"), client.SendOptions{}); grpcCode(err) != codes.PermissionDenied {
			t.Errorf("send to a blocked peer's user: got %v, want PermissionDenied", err)
		}
	})
}

// TestFederationDeadLetter sends to a device b does not have, between
// two good envelopes: b refuses it for good, a dead-letters it and tells
// the sending device, and the envelopes after it still arrive.
func TestFederationDeadLetter(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		a := startFedNode(t, backend, "a.example", nil)
		b := startFedNode(t, backend, "b.example", nil)
		peerAll(t, a, b)
		a.createUser(t, "alice", "alice-password")
		b.createUser(t, "bob", "bob-password")
		alice := a.login(t, "alice", "alice-password")
		bob := b.login(t, "bob", "bob-password")
		ghost := &device{user: bob.user, id: string(valise.NewDeviceID())}
		bobStream := inboxStream(t, bob, 0)
		aliceStream := inboxStream(t, alice, 0)

		send(t, alice, "k1", []*device{bob}, []byte("first"))
		lost := send(t, alice, "k2", []*device{ghost}, []byte("to nobody"))
		send(t, alice, "k3", []*device{bob}, []byte("third"))
		got := recvN(t, bobStream, 2)
		if string(got[0].Ciphertext) != "first" || string(got[1].Ciphertext) != "third" {
			t.Errorf("bob got %q, %q; want first, third", got[0].Ciphertext, got[1].Ciphertext)
		}
		n := recvN(t, aliceStream, 1)[0]
		f := n.GetDeliveryFailure()
		if f == nil || f.EnvelopeId != lost[0] || f.RecipientUser != "bob@b.example" || f.RecipientDeviceId != ghost.id || f.Reason != "unknown_recipient" {
			t.Fatalf("alice's notice = %v; want the failure of %s to %s (unknown_recipient)", n, lost[0], ghost.id)
		}
		if n.SenderUser != "" || len(n.Ciphertext) != 0 {
			t.Errorf("a notice carries a sender or ciphertext: %v", n)
		}
		if _, err := alice.c.AckInbox(alice.ctx(t.Context()), &clientv1.AckInboxRequest{Cursor: n.Cursor}); err != nil {
			t.Fatalf("ack the notice: %v", err)
		}
		expectNothing(t, bobStream)
		if got := a.metric(t, "valise_federation_dead_letters_total"); got != 1 {
			t.Errorf("dead letters on a = %v, want 1", got)
		}
	})
}

// grpcCode returns err's gRPC code, also through wrapping.
func grpcCode(err error) codes.Code { return status.Code(err) }

// TestFederationPeersFromConfig declares a peer in the config file: the
// node adds it at start, updates its address and CA bundle when the file
// changes, keeps an admin's block, and messages flow through it.
func TestFederationPeersFromConfig(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		b := startFedNode(t, backend, "b.example", nil)
		dirA := newNamedNodeDir(t, backend, "a.example")
		if err := os.MkdirAll(filepath.Join(dirA, "peers"), 0o700); err != nil {
			t.Fatal(err)
		}
		caB, err := os.ReadFile(filepath.Join(b.dir, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirA, "peers", "b.pem"), caB, 0o600); err != nil {
			t.Fatal(err)
		}
		declare := func(addr string) func(*config.Config) {
			return func(c *config.Config) {
				fedTweak(c)
				c.Federation.Peers = []config.Peer{{Name: "b.example", Address: addr, CABundleFile: "peers/b.pem"}}
			}
		}
		a := startNodeIn(t, dirA, testConfig(t, dirA, declare("127.0.0.1:1")))
		peers, err := a.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(peers.Peers) != 1 || peers.Peers[0].Name != "b.example" || peers.Peers[0].Address != "127.0.0.1:1" {
			t.Fatalf("peers after a start with a declared peer: %v", peers.Peers)
		}
		if _, err := a.admin.BlockPeer(t.Context(), &adminv1.BlockPeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		a.stop()

		// The address changes in the file: the restart updates it, and
		// the admin's block stays until lifted.
		a = startNodeIn(t, dirA, testConfig(t, dirA, declare(b.ready.Federation)))
		p := a.peerStateFull(t, "b.example")
		if p.Address != b.ready.Federation || !p.Blocked {
			t.Fatalf("peer after restart: address %s blocked %v; want %s, still blocked", p.Address, p.Blocked, b.ready.Federation)
		}
		if _, err := a.admin.UnblockPeer(t.Context(), &adminv1.UnblockPeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		addPeer(t, b, dirA, a.ready.Federation)
		a.createUser(t, "alice", "alice-password")
		b.createUser(t, "bob", "bob-password")
		alice := a.login(t, "alice", "alice-password")
		bob := b.login(t, "bob", "bob-password")
		send(t, alice, "k", []*device{bob}, []byte("via a declared peer"))
		if m := recvN(t, inboxStream(t, bob, 0), 1)[0]; string(m.Ciphertext) != "via a declared peer" {
			t.Errorf("bob got %q", m.Ciphertext)
		}
		events, err := a.admin.ListAuditEvents(t.Context(), &adminv1.ListAuditEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range events.Events {
			if e.Actor == "config" {
				actions = append(actions, e.Action)
			}
		}
		if len(actions) != 2 || actions[0] != "peer.add" || actions[1] != "peer.update" {
			t.Errorf("config's audit events = %q; want peer.add, peer.update", actions)
		}
	})
}

// peerStateFull returns n's peer entry for peer.
func (n *testNode) peerStateFull(t testing.TB, peer string) *adminv1.Peer {
	t.Helper()
	resp, err := n.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Peers {
		if p.Name == peer {
			return p
		}
	}
	t.Fatalf("%s is not a peer of %s", peer, n.cfg.Node.Name)
	return nil
}

// TestFederationMisconfiguredPeer shows the two mistakes admins make most
// in `peer list`: the wrong CA bundle for a peer, and an address that
// reaches another node. Nothing is delivered and the last error says why;
// once fixed, `peer retry` delivers at once.
func TestFederationMisconfiguredPeer(t *testing.T) {
	a := startFedNode(t, "sqlite", "a.example", func(c *config.Config) {
		c.Federation.BackoffMin = config.Duration(time.Hour) // only retry delivers
		c.Federation.BackoffMax = config.Duration(time.Hour)
	})
	b := startFedNode(t, "sqlite", "b.example", nil)
	c := startFedNode(t, "sqlite", "c.example", nil)
	addPeer(t, b, a.dir, a.ready.Federation)
	a.createUser(t, "alice", "alice-password")
	b.createUser(t, "bob", "bob-password")
	alice := a.login(t, "alice", "alice-password")
	bob := b.login(t, "bob", "bob-password")

	aliceStream := inboxStream(t, alice, 0)
	caC, _ := os.ReadFile(filepath.Join(c.dir, "ca.crt"))
	caB, _ := os.ReadFile(filepath.Join(b.dir, "ca.crt"))
	for _, tc := range []struct {
		name, addr string
		ca         []byte
		want       string
	}{
		{"wrong CA bundle", b.ready.Federation, caC, "x509: certificate signed by unknown authority"},
		{"address of another node", c.ready.Federation, caB, "x509: certificate is valid for c.example, not b.example"},
	} {
		if _, err := a.admin.AddPeer(t.Context(), &adminv1.AddPeerRequest{Name: "b.example", Address: tc.addr, CaBundle: tc.ca}); err != nil {
			t.Fatal(err)
		}
		send(t, alice, "k-"+tc.name, []*device{bob}, []byte(tc.name))
		var d *adminv1.PeerDelivery
		eventually(t, 10*time.Second, tc.name+": a failed delivery in peer list", func() bool {
			d = a.peerState(t, "b.example")
			return d.State == "retrying"
		})
		t.Logf("%s: peer list shows %q", tc.name, d.LastError)
		if !strings.Contains(d.LastError, tc.want) || d.QueueDepth != 1 || d.NextAttemptTime == nil || d.ConsecutiveFailures < 1 {
			t.Errorf("%s: delivery state %v; want retrying with an error mentioning %q and one envelope queued", tc.name, d, tc.want)
		}
		// Removing the peer gives its queue up: alice is told.
		if _, err := a.admin.RemovePeer(t.Context(), &adminv1.RemovePeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		if m := recvN(t, aliceStream, 1)[0]; m.GetDeliveryFailure().GetReason() != "not_peer" {
			t.Errorf("alice's inbox: %v; want a not_peer delivery failure", m)
		}
	}
	// Fixed: the right CA and address; peer retry delivers at once
	// although the backoff is an hour.
	addPeer(t, a, b.dir, b.ready.Federation)
	send(t, alice, "k-fixed", []*device{bob}, []byte("fixed"))
	bobStream := inboxStream(t, bob, 0)
	if m := recvN(t, bobStream, 1)[0]; string(m.Ciphertext) != "fixed" {
		t.Fatalf("bob got %q", m.Ciphertext)
	}
	if _, err := b.admin.BlockPeer(t.Context(), &adminv1.BlockPeerRequest{Name: "a.example"}); err != nil {
		t.Fatal(err)
	}
	send(t, alice, "k-blocked", []*device{bob}, []byte("after the block"))
	eventually(t, 10*time.Second, "a sees b refuse", func() bool { return a.peerState(t, "b.example").State == "retrying" })
	if _, err := b.admin.UnblockPeer(t.Context(), &adminv1.UnblockPeerRequest{Name: "a.example"}); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, bobStream)
	if _, err := a.admin.RetryPeer(t.Context(), &adminv1.RetryPeerRequest{Name: "b.example"}); err != nil {
		t.Fatal(err)
	}
	if m := recvN(t, bobStream, 1)[0]; string(m.Ciphertext) != "after the block" {
		t.Fatalf("bob got %q after peer retry", m.Ciphertext)
	}
	_, err := a.admin.RetryPeer(t.Context(), &adminv1.RetryPeerRequest{Name: "z.example"})
	wantCode(t, err, codes.NotFound)
}

// TestFederationCLI is the issue's user story with the real `valise`
// binary: alice on a.example sends to bob@b.example, bob reads it and
// answers; a message to a device b does not have comes back as a loud
// warning on alice's next recv.
func TestFederationCLI(t *testing.T) {
	a := startFedNode(t, "sqlite", "a.example", nil)
	b := startFedNode(t, "sqlite", "b.example", nil)
	peerAll(t, a, b)
	a.createUser(t, "alice", "alice-password")
	b.createUser(t, "bob", "bob-password")
	aliceState, bobState := filepath.Join(t.TempDir(), "alice"), filepath.Join(t.TempDir(), "bob")
	cliLogin(t, a, aliceState, "alice@a.example", "alice-password")
	cliLogin(t, b, bobState, "bob@b.example", "bob-password")

	mustValise(t, "", "--state", aliceState, "send", "bob@b.example", "The draft is ready.")
	var got []cliMessage
	eventually(t, 20*time.Second, "bob reads alice's message", func() bool {
		got = append(got, cliRecv(t, bobState, "1s")...)
		return len(got) > 0
	})
	if len(got) != 1 || got[0].From != "alice@a.example" || got[0].Text != "The draft is ready." {
		t.Fatalf("bob received %+v", got)
	}
	mustValise(t, "", "--state", bobState, "send", "alice@a.example", "Thanks, reading it now.")
	got = nil
	eventually(t, 20*time.Second, "alice reads bob's answer", func() bool {
		got = append(got, cliRecv(t, aliceState, "1s")...)
		return len(got) > 0
	})
	if len(got) != 1 || got[0].From != "bob@b.example" || got[0].Text != "Thanks, reading it now." {
		t.Fatalf("alice received %+v", got)
	}

	// c takes only small envelopes: alice's message to carol there is
	// refused for good, and alice's next recv says so loudly.
	c := startFedNode(t, "sqlite", "c.example", func(c *config.Config) { c.Limits.MaxCiphertextBytes = 1024 })
	peerAll(t, a, c)
	c.createUser(t, "carol", "carol-password")
	cliLogin(t, c, filepath.Join(t.TempDir(), "carol"), "carol@c.example", "carol-password")
	mustValise(t, "", "--state", aliceState, "send", "carol@c.example", "hello carol")
	var warned string
	eventually(t, 20*time.Second, "alice is told of the lost message", func() bool {
		res := mustValise(t, "", "--state", aliceState, "recv", "--timeout", "1s")
		warned += res.stderr
		return strings.Contains(warned, "was NOT delivered")
	})
	if !strings.Contains(warned, "WARNING: envelope ") || !strings.Contains(warned, "to carol@c.example device") || !strings.Contains(warned, "too_large") {
		t.Errorf("alice's warning: %q", warned)
	}
}
