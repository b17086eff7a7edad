package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// testCA mints certificates for the mTLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "valise test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate for name and 127.0.0.1 and its key,
// both PEM.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// startTLSFake serves a fake AdminService on loopback with mutual TLS,
// capped at maxVersion, and returns its address and the admin client's
// --cert, --key and --ca flags.
func startTLSFake(t *testing.T, maxVersion uint16) (*fakeAdmin, string, []string) {
	t.Helper()
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(t, "node.test", x509.ExtKeyUsageServerAuth)
	pair, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(ca.cert)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    clients,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   maxVersion,
	}

	dir := t.TempDir()
	clientCert, clientKey := ca.issue(t, "admin@node.test", x509.ExtKeyUsageClientAuth)
	files := map[string][]byte{"admin.crt": clientCert, "admin.key": clientKey, "ca.crt": ca.pem}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAdmin()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	adminv1.RegisterAdminServiceServer(srv, f)
	serveInBackground(t, srv, lis)
	flags := []string{
		"--cert", filepath.Join(dir, "admin.crt"),
		"--key", filepath.Join(dir, "admin.key"),
		"--ca", filepath.Join(dir, "ca.crt"),
	}
	return f, lis.Addr().String(), flags
}

func TestRemoteMTLS(t *testing.T) {
	f, addr, tlsFlags := startTLSFake(t, tls.VersionTLS13)
	f.addUser("alice")
	old, oldAddr, oldFlags := startTLSFake(t, tls.VersionTLS12)
	old.addUser("alice")

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"mutual TLS 1.3", append([]string{"--addr", addr, "--server-name", "node.test"}, tlsFlags...), 0, ""},
		{"wrong server name", append([]string{"--addr", addr, "--server-name", "other.test"}, tlsFlags...), 1, "(Unavailable)"},
		{"server name from addr", append([]string{"--addr", addr}, tlsFlags...), 0, ""},
		{"TLS 1.2 refused", append([]string{"--addr", oldAddr, "--server-name", "node.test"}, oldFlags...), 1, "(Unavailable)"},
		{"missing key", []string{"--addr", addr, "--cert", tlsFlags[1], "--ca", tlsFlags[5]}, 2, "--addr needs --cert, --key and --ca"},
		{"socket and addr", append([]string{"--addr", addr, "--socket", "x.sock"}, tlsFlags...), 2, "cannot be used together"},
		{"unreadable CA", append(append([]string{"--addr", addr}, tlsFlags[:4]...), "--ca", filepath.Join(t.TempDir(), "none.crt")), 1, "--ca:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"--timeout", "5s"}, tt.args...), "user", "show", "alice")
			code, stdout, stderr := runCLI(t, t.TempDir(), "", args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr, tt.wantCode, tt.wantStderr)
			}
			if code == 0 && !strings.Contains(stdout, "alice@node.test") {
				t.Errorf("stdout = %q, want alice@node.test", stdout)
			}
		})
	}
	if got := old.calledN("GetUser"); got != 0 {
		t.Errorf("the TLS 1.2 node served %d calls, want 0", got)
	}
}
