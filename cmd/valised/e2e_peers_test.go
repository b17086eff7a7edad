package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// TestPeerList lists another node as a federation peer, with the real
// valisectl and through AdminService, on each backend: add with the other
// node's CA, refuse bad input, block, unblock, remove, and audit it all.
func TestPeerList(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		other := newNodeDir(t, "sqlite")
		caFile := filepath.Join(other, "ca.crt")
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(caPEM)
		if block == nil {
			t.Fatalf("%s holds no PEM block", caFile)
		}
		sum := sha256.Sum256(block.Bytes)
		fingerprint := hex.EncodeToString(sum[:])

		out, errs, code := n.ctl(t, "", "peer", "add", "b.example", "--address", "127.0.0.1:7443", "--ca-bundle", caFile)
		if code != 0 || !strings.Contains(out, fingerprint) {
			t.Fatalf("peer add: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		if _, errs, code := n.ctl(t, "", "peer", "add", "b.example", "--address", "127.0.0.1:7443", "--ca-bundle", caFile); code != 1 || !strings.Contains(errs, "exists") {
			t.Fatalf("duplicate peer add: exit %d: %s", code, errs)
		}

		out, errs, code = n.ctl(t, "", "--json", "peer", "list", "--all")
		if code != 0 {
			t.Fatalf("peer list: exit %d: %s", code, errs)
		}
		var list struct {
			Peers []struct {
				Name           string   `json:"name"`
				Address        string   `json:"address"`
				Blocked        bool     `json:"blocked"`
				CAFingerprints []string `json:"ca_fingerprints"`
				CreatedTime    string   `json:"created_time"`
			} `json:"peers"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("peer list --json: %v\n%s", err, out)
		}
		if len(list.Peers) != 1 {
			t.Fatalf("peer list = %+v, want b.example", list.Peers)
		}
		p := list.Peers[0]
		if p.Name != "b.example" || p.Address != "127.0.0.1:7443" || p.Blocked || len(p.CAFingerprints) != 1 || p.CAFingerprints[0] != fingerprint || p.CreatedTime == "" {
			t.Errorf("peer = %+v, want b.example at 127.0.0.1:7443, unblocked, CA %s", p, fingerprint)
		}

		// Bad input, through the admin client: each is InvalidArgument.
		nodeCert, err := os.ReadFile(filepath.Join(other, "node.crt"))
		if err != nil {
			t.Fatal(err)
		}
		bad := []struct {
			name, peer, address string
			bundle              []byte
		}{
			{"own name", "localhost", "127.0.0.1:7443", caPEM},
			{"malformed name", "B_Example", "127.0.0.1:7443", caPEM},
			{"address without port", "c.example", "c.example", caPEM},
			{"address with a bad port", "c.example", "c.example:99999", caPEM},
			{"empty address", "c.example", "", caPEM},
			{"non-CA certificate", "c.example", "c.example:7443", nodeCert},
			{"CA then non-CA", "c.example", "c.example:7443", append(append([]byte{}, caPEM...), nodeCert...)},
			{"garbage", "c.example", "c.example:7443", []byte("this is not PEM")},
			{"empty bundle", "c.example", "c.example:7443", nil},
			{"PEM that is not a certificate", "c.example", "c.example:7443", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})},
		}
		for _, tt := range bad {
			_, err := n.admin.AddPeer(t.Context(), &adminv1.AddPeerRequest{Name: tt.peer, Address: tt.address, CaBundle: tt.bundle})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("AddPeer %s: got %v, want InvalidArgument", tt.name, err)
			}
		}
		if _, errs, code := n.ctl(t, "", "peer", "add", "localhost", "--address", "127.0.0.1:7443", "--ca-bundle", caFile); code != 1 || !strings.Contains(errs, "InvalidArgument") {
			t.Errorf("peer add of the own name: exit %d: %s", code, errs)
		}
		if _, errs, code := n.ctl(t, "", "peer", "add", "c.example", "--address", "127.0.0.1:7443", "--ca-bundle", filepath.Join(other, "node.crt")); code != 1 || !strings.Contains(errs, "InvalidArgument") {
			t.Errorf("peer add with a non-CA certificate: exit %d: %s", code, errs)
		}

		// Update: a second CA beside the first (a CA rotation), then a new
		// address; bad input changes nothing.
		third := newNodeDir(t, "sqlite")
		caPEM2, err := os.ReadFile(filepath.Join(third, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		both := filepath.Join(t.TempDir(), "both.pem")
		if err := os.WriteFile(both, append(append([]byte{}, caPEM...), caPEM2...), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errs, code = n.ctl(t, "", "peer", "update", "b.example", "--ca-bundle", both)
		if code != 0 || !strings.HasPrefix(out, "updated peer b.example at 127.0.0.1:7443\n") || strings.Count(out, "trusted CA sha256") != 2 {
			t.Fatalf("peer update --ca-bundle: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		if _, errs, code := n.ctl(t, "", "peer", "update", "b.example", "--address", "10.1.2.3:7444"); code != 0 {
			t.Fatalf("peer update --address: exit %d: %s", code, errs)
		}
		for _, args := range [][]string{
			{"peer", "update", "b.example"},
			{"peer", "update", "b.example", "--address", "no-port"},
			{"peer", "update", "b.example", "--ca-bundle", filepath.Join(other, "node.crt")},
			{"peer", "update", "z.example", "--address", "10.1.2.3:7444"},
		} {
			if _, errs, code := n.ctl(t, "", args...); code == 0 {
				t.Errorf("%q succeeded; stderr %q", args, errs)
			}
		}
		if resp, err := n.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{}); err != nil || resp.GetPeers()[0].GetAddress() != "10.1.2.3:7444" || len(resp.GetPeers()[0].GetCaFingerprints()) != 2 {
			t.Fatalf("ListPeers after update: %v, %v", resp, err)
		}

		// Block, unblock, remove.
		if _, errs, code := n.ctl(t, "", "peer", "block", "b.example"); code != 0 {
			t.Fatalf("peer block: exit %d: %s", code, errs)
		}
		resp, err := n.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{})
		if err != nil || len(resp.GetPeers()) != 1 || !resp.GetPeers()[0].GetBlocked() {
			t.Fatalf("ListPeers after block: %v, %v", resp, err)
		}
		out, _, code = n.ctl(t, "", "peer", "list")
		if code != 0 || !strings.Contains(out, "blocked") {
			t.Errorf("peer list after block: exit %d:\n%s", code, out)
		}
		if _, err := n.admin.UnblockPeer(t.Context(), &adminv1.UnblockPeerRequest{Name: "b.example"}); err != nil {
			t.Fatalf("UnblockPeer: %v", err)
		}
		if resp, err := n.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{}); err != nil || resp.GetPeers()[0].GetBlocked() {
			t.Fatalf("ListPeers after unblock: %v, %v", resp, err)
		}
		if _, errs, code := n.ctl(t, "", "peer", "remove", "b.example"); code != 0 {
			t.Fatalf("peer remove: exit %d: %s", code, errs)
		}
		for _, verb := range []string{"remove", "block", "unblock"} {
			if _, errs, code := n.ctl(t, "", "peer", verb, "b.example"); code != 1 || !strings.Contains(errs, "not found") {
				t.Errorf("peer %s after remove: exit %d: %s", verb, code, errs)
			}
		}
		if resp, err := n.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{}); err != nil || len(resp.GetPeers()) != 0 {
			t.Fatalf("ListPeers after remove: %v, %v", resp, err)
		}

		// Every change, and only the changes that succeeded, is audited.
		out, errs, code = n.ctl(t, "", "--json", "audit", "list", "--all")
		if code != 0 || strings.Contains(errs, "warn") {
			t.Fatalf("audit list: exit %d: %s", code, errs)
		}
		var audit struct {
			Events []struct {
				Action string `json:"action"`
				Target string `json:"target"`
			} `json:"events"`
			ChainVerified bool `json:"chain_verified"`
		}
		if err := json.Unmarshal([]byte(out), &audit); err != nil {
			t.Fatalf("audit list --json: %v\n%s", err, out)
		}
		var got []string
		for _, e := range audit.Events {
			if strings.HasPrefix(e.Action, "peer.") {
				got = append(got, e.Action+" "+e.Target)
			}
		}
		want := []string{"peer.add b.example", "peer.update b.example", "peer.update b.example", "peer.block b.example", "peer.unblock b.example", "peer.remove b.example"}
		if strings.Join(got, ", ") != strings.Join(want, ", ") || !audit.ChainVerified {
			t.Errorf("audited peer actions = %q (chain verified %v), want %q", got, audit.ChainVerified, want)
		}
	})
}
