package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// fakeNode is a small in-memory ClientService over real TLS on loopback,
// enough to drive the client end to end without a real node. It follows
// the contract of client.proto; the real node is exercised by the
// end-to-end tests of cmd/valised.
type fakeNode struct {
	clientv1.UnimplementedClientServiceServer
	addr  string
	caPEM []byte

	mu        sync.Mutex
	passwords map[string]string      // localpart → password
	devices   map[string]*fakeDevice // token → device
	byID      map[string]*fakeDevice // device id → device
	sends     map[string][]string    // device|idempotency key → ids
	wake      chan struct{}
	nextEnv   int

	// Test knobs.
	failSendOnce   bool // commit the next send, then answer Unavailable
	exhaustClaims  bool // ClaimOneTimeKey answers ResourceExhausted
	sendCalls      int
	claimCalls     int
	streams        int               // open StreamInbox calls
	identityChange map[string][]byte // device id → identity key served instead
	keysDown       bool              // GetDeviceKeys answers Unavailable
	onGetKeys      func()            // called (without mu) at each GetDeviceKeys
	keysRefusals   []error           // answered in turn by GetDeviceKeys before it answers
	loginDeviceID  *string           // device id Login answers instead
}

type fakeDevice struct {
	user, id, token, name string
	created               time.Time
	identity              []byte
	signed                *clientv1.PreKey
	otks                  []*clientv1.PreKey
	usedOTK               map[uint32]bool
	inbox                 []*clientv1.StreamInboxResponse
	cursor                uint64
	revoked               bool
}

const fakeNodeName = "localhost"

func startFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	caPEM, cert := testCertificates(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{
		addr: lis.Addr().String(), caPEM: caPEM,
		passwords: map[string]string{}, devices: map[string]*fakeDevice{}, byID: map[string]*fakeDevice{},
		sends: map[string][]string{}, wake: make(chan struct{}), identityChange: map[string][]byte{},
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})))
	clientv1.RegisterClientServiceServer(srv, n)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return n
}

func (n *fakeNode) addUser(localpart, password string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.passwords[localpart] = password
}

// notify wakes every stream; the caller holds mu.
func (n *fakeNode) notify() {
	close(n.wake)
	n.wake = make(chan struct{})
}

func localpart(user string) string {
	l, _, _ := strings.Cut(user, "@")
	return l
}

func (n *fakeNode) caller(ctx context.Context) (*fakeDevice, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := md.Get("authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	d := n.devices[strings.TrimPrefix(auth[0], "Bearer ")]
	if d == nil || d.revoked {
		return nil, status.Error(codes.Unauthenticated, "unknown token")
	}
	return d, nil
}

func (n *fakeNode) Login(_ context.Context, r *clientv1.LoginRequest) (*clientv1.LoginResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	lp := localpart(r.GetUser())
	if pw, ok := n.passwords[lp]; !ok || pw != r.GetPassword() {
		return nil, status.Error(codes.Unauthenticated, "wrong user or password")
	}
	d := &fakeDevice{user: lp + "@" + fakeNodeName, id: string(valise.NewDeviceID()), token: randomHex(16), name: r.GetDeviceDisplayName(), created: time.Now(), usedOTK: map[uint32]bool{}}
	if n.loginDeviceID != nil {
		d.id = *n.loginDeviceID
	}
	n.devices[d.token], n.byID[d.id] = d, d
	return &clientv1.LoginResponse{User: d.user, DeviceId: d.id, AccessToken: d.token}, nil
}

func (n *fakeNode) Logout(ctx context.Context, _ *clientv1.LogoutRequest) (*clientv1.LogoutResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	d.revoked = true
	n.notify()
	return &clientv1.LogoutResponse{}, nil
}

func (n *fakeNode) ListDevices(ctx context.Context, _ *clientv1.ListDevicesRequest) (*clientv1.ListDevicesResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	var out []*clientv1.Device
	for _, d := range n.byID {
		if d.user == c.user && !d.revoked {
			out = append(out, &clientv1.Device{DeviceId: d.id, DisplayName: d.name, CreatedTime: timestamppb.New(d.created), HasKeys: d.identity != nil})
		}
	}
	slices.SortFunc(out, func(a, b *clientv1.Device) int { return strings.Compare(a.DeviceId, b.DeviceId) })
	return &clientv1.ListDevicesResponse{Devices: out}, nil
}

func (n *fakeNode) PublishDeviceKeys(ctx context.Context, r *clientv1.PublishDeviceKeysRequest) (*clientv1.PublishDeviceKeysResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	if len(r.GetOneTimePrekeys()) > maxOneTimeKeysPerUpload {
		return nil, status.Error(codes.InvalidArgument, "too many one-time keys")
	}
	if d.identity == nil && (len(r.GetIdentityKey()) == 0 || r.GetSignedPrekey() == nil) {
		return nil, status.Error(codes.InvalidArgument, "first publish needs identity and signed prekey")
	}
	if d.identity != nil && len(r.GetIdentityKey()) > 0 && string(d.identity) != string(r.GetIdentityKey()) {
		return nil, status.Error(codes.AlreadyExists, "identity key differs")
	}
	for _, k := range r.GetOneTimePrekeys() {
		if d.usedOTK[k.GetKeyId()] {
			return nil, status.Error(codes.AlreadyExists, "one-time key id used before")
		}
	}
	if len(d.otks)+len(r.GetOneTimePrekeys()) > maxOneTimeKeysStored {
		return nil, status.Error(codes.FailedPrecondition, "too many stored")
	}
	if len(r.GetIdentityKey()) > 0 {
		d.identity = r.GetIdentityKey()
	}
	if r.GetSignedPrekey() != nil {
		d.signed = r.GetSignedPrekey()
	}
	for _, k := range r.GetOneTimePrekeys() {
		d.usedOTK[k.GetKeyId()] = true
		d.otks = append(d.otks, k)
	}
	slices.SortFunc(d.otks, func(a, b *clientv1.PreKey) int { return int(a.KeyId) - int(b.KeyId) })
	return &clientv1.PublishDeviceKeysResponse{OneTimeKeyCount: uint32(len(d.otks))}, nil
}

func (n *fakeNode) CountOneTimeKeys(ctx context.Context, _ *clientv1.CountOneTimeKeysRequest) (*clientv1.CountOneTimeKeysResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	return &clientv1.CountOneTimeKeysResponse{OneTimeKeyCount: uint32(len(d.otks))}, nil
}

func (n *fakeNode) GetDeviceKeys(ctx context.Context, r *clientv1.GetDeviceKeysRequest) (*clientv1.GetDeviceKeysResponse, error) {
	n.mu.Lock()
	hook := n.onGetKeys
	n.mu.Unlock()
	if hook != nil {
		hook()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.caller(ctx); err != nil {
		return nil, err
	}
	if n.keysDown {
		return nil, status.Error(codes.Unavailable, "key directory down")
	}
	if len(n.keysRefusals) > 0 {
		err := n.keysRefusals[0]
		n.keysRefusals = n.keysRefusals[1:]
		return nil, err
	}
	user := localpart(r.GetUser()) + "@" + fakeNodeName
	resp := &clientv1.GetDeviceKeysResponse{User: user}
	for _, d := range n.byID {
		if d.user == user && !d.revoked && d.identity != nil {
			id := d.identity
			if k := n.identityChange[d.id]; k != nil {
				id = k
			}
			resp.Devices = append(resp.Devices, &clientv1.DeviceKeys{DeviceId: d.id, IdentityKey: id, SignedPrekey: d.signed})
		}
	}
	slices.SortFunc(resp.Devices, func(a, b *clientv1.DeviceKeys) int { return strings.Compare(a.DeviceId, b.DeviceId) })
	return resp, nil
}

func (n *fakeNode) ClaimOneTimeKey(ctx context.Context, r *clientv1.ClaimOneTimeKeyRequest) (*clientv1.ClaimOneTimeKeyResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.caller(ctx); err != nil {
		return nil, err
	}
	n.claimCalls++
	if n.exhaustClaims {
		return nil, status.Error(codes.ResourceExhausted, "too many claims")
	}
	d := n.byID[r.GetDeviceId()]
	if d == nil || d.revoked || d.identity == nil {
		return nil, status.Error(codes.NotFound, "no such device")
	}
	if len(d.otks) == 0 {
		return &clientv1.ClaimOneTimeKeyResponse{DeviceId: d.id, Key: d.signed, Fallback: true}, nil
	}
	k := d.otks[0]
	d.otks = d.otks[1:]
	return &clientv1.ClaimOneTimeKeyResponse{DeviceId: d.id, Key: k}, nil
}

func (n *fakeNode) SendEnvelopes(ctx context.Context, r *clientv1.SendEnvelopesRequest) (*clientv1.SendEnvelopesResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	n.sendCalls++
	if r.GetIdempotencyKey() == "" {
		return nil, status.Error(codes.InvalidArgument, "no idempotency key")
	}
	key := c.id + "|" + r.GetIdempotencyKey()
	if ids, ok := n.sends[key]; ok {
		return &clientv1.SendEnvelopesResponse{EnvelopeIds: ids}, nil
	}
	for _, e := range r.GetEnvelopes() {
		d := n.byID[e.GetRecipientDeviceId()]
		if d == nil || d.revoked || d.user != localpart(e.GetRecipientUser())+"@"+fakeNodeName {
			return nil, status.Error(codes.NotFound, "unknown recipient")
		}
	}
	var ids []string
	for _, e := range r.GetEnvelopes() {
		d := n.byID[e.GetRecipientDeviceId()]
		n.nextEnv++
		d.cursor++
		id := string(valise.NewEnvelopeID(time.Now()))
		ids = append(ids, id)
		d.inbox = append(d.inbox, &clientv1.StreamInboxResponse{
			EnvelopeId: id, SenderUser: c.user, SenderDeviceId: c.id, ServerTime: timestamppb.Now(), Ciphertext: e.GetCiphertext(), Cursor: d.cursor,
		})
	}
	n.sends[key] = ids
	n.notify()
	if n.failSendOnce {
		n.failSendOnce = false
		return nil, status.Error(codes.Unavailable, "connection lost after commit")
	}
	return &clientv1.SendEnvelopesResponse{EnvelopeIds: ids}, nil
}

// inject puts a raw envelope in a device's inbox.
func (n *fakeNode) inject(device string, e *clientv1.StreamInboxResponse) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.byID[device]
	d.cursor++
	e.Cursor = d.cursor
	d.inbox = append(d.inbox, e)
	n.notify()
}

func (n *fakeNode) inboxLen(device string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.byID[device].inbox)
}

func (n *fakeNode) otkCount(device string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.byID[device].otks)
}

func (n *fakeNode) StreamInbox(r *clientv1.StreamInboxRequest, s grpc.ServerStreamingServer[clientv1.StreamInboxResponse]) error {
	after := r.GetAfterCursor()
	n.mu.Lock()
	n.streams++
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.streams--
		n.mu.Unlock()
	}()
	for {
		n.mu.Lock()
		d, err := n.caller(s.Context())
		if err != nil {
			n.mu.Unlock()
			return err
		}
		var batch []*clientv1.StreamInboxResponse
		for _, e := range d.inbox {
			if e.Cursor > after {
				batch = append(batch, e)
			}
		}
		wake := n.wake
		n.mu.Unlock()
		for _, e := range batch {
			if err := s.Send(e); err != nil {
				return err
			}
			after = e.Cursor
		}
		select {
		case <-wake:
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

func (n *fakeNode) AckInbox(ctx context.Context, r *clientv1.AckInboxRequest) (*clientv1.AckInboxResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, err := n.caller(ctx)
	if err != nil {
		return nil, err
	}
	if r.GetCursor() == 0 {
		return nil, status.Error(codes.InvalidArgument, "cursor 0")
	}
	d.inbox = slices.DeleteFunc(d.inbox, func(e *clientv1.StreamInboxResponse) bool { return e.Cursor <= r.GetCursor() })
	return &clientv1.AckInboxResponse{}, nil
}

// testCertificates mints a CA and a certificate for localhost and
// 127.0.0.1 signed by it.
func testCertificates(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
