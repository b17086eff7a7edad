package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
)

// runCheck runs `valised check --data dir` and returns its exit code,
// stdout and stderr.
func runCheck(t *testing.T, dir string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"check", "--data", dir}, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// problemLines returns the "PATH: message" lines a failed check printed
// after its "has problems:" header.
func problemLines(t *testing.T, stderr string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(stderr, "has problems:\n")
	if !ok {
		t.Fatalf("check stderr has no problem list:\n%s", stderr)
	}
	return strings.Split(strings.TrimRight(rest, "\n"), "\n")
}

// nodeCA loads the CA that init created in dir.
func nodeCA(t *testing.T, dir string) *pki.CA {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issueAt issues a server certificate for names from ca, valid from
// notBefore to notAfter, which pki does not offer.
func issueAt(t *testing.T, ca *pki.CA, names []string, notBefore, notAfter time.Time) pki.Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// installLeaf replaces the node's certificate and key.
func installLeaf(t *testing.T, dir string, l pki.Leaf) {
	t.Helper()
	writeFile(t, dir, "node.crt", l.CertPEM)
	writeFile(t, dir, "node.key", l.KeyPEM)
}

func issueServer(t *testing.T, ca *pki.CA, names ...string) pki.Leaf {
	t.Helper()
	l, err := ca.IssueServer(names, nil, time.Hour*24*365)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCheckFresh(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	code, out, errOut := runCheck(t, dir)
	if code != 0 {
		t.Fatalf("check of a fresh node = %d, want 0; stderr:\n%s", code, errOut)
	}
	if want := filepath.Join(dir, config.FileName) + ": ok (node localhost, storage sqlite)\n"; out != want {
		t.Errorf("check printed %q, want %q", out, want)
	}
	if errOut != "" {
		t.Errorf("check of a fresh node wrote to stderr:\n%s", errOut)
	}
}

// TestCheckProblems breaks one node directory per case and checks that
// check reports exactly the expected problems, each with its config path.
func TestCheckProblems(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		breakDir func(t *testing.T, dir string)
		// want holds one substring per expected problem line, in the
		// sorted order check prints them.
		want []string
	}{
		{
			name: "other name",
			breakDir: func(t *testing.T, dir string) {
				installLeaf(t, dir, issueServer(t, nodeCA(t, dir), "other.example"))
			},
			want: []string{"tls.cert_file: " + "DIR/node.crt does not name node localhost (its DNS names: other.example)"},
		},
		{
			name: "other CA",
			breakDir: func(t *testing.T, dir string) {
				other, err := pki.NewCA("other CA", time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				installLeaf(t, dir, issueServer(t, other, "localhost"))
			},
			want: []string{"tls.cert_file: DIR/node.crt does not verify against tls.ca_file for server authentication: x509: certificate signed by unknown authority"},
		},
		{
			name: "expired",
			breakDir: func(t *testing.T, dir string) {
				installLeaf(t, dir, issueAt(t, nodeCA(t, dir), []string{"localhost"}, now.Add(-48*time.Hour), now.Add(-time.Hour)))
			},
			want: []string{`tls.cert_file: DIR/node.crt: certificate "CN=localhost" expired at`},
		},
		{
			name: "not yet valid",
			breakDir: func(t *testing.T, dir string) {
				installLeaf(t, dir, issueAt(t, nodeCA(t, dir), []string{"localhost"}, now.Add(time.Hour), now.Add(48*time.Hour)))
			},
			want: []string{`tls.cert_file: DIR/node.crt: certificate "CN=localhost" is not valid until`},
		},
		{
			name: "expired from other CA",
			breakDir: func(t *testing.T, dir string) {
				other, err := pki.NewCA("other CA", time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				installLeaf(t, dir, issueAt(t, other, []string{"localhost"}, now.Add(-48*time.Hour), now.Add(-time.Hour)))
			},
			want: []string{
				`tls.cert_file: DIR/node.crt does not verify against tls.ca_file`,
				`tls.cert_file: DIR/node.crt: certificate "CN=localhost" expired at`,
			},
		},
		{
			name: "key mismatch",
			breakDir: func(t *testing.T, dir string) {
				writeFile(t, dir, "node.key", issueServer(t, nodeCA(t, dir), "localhost").KeyPEM)
			},
			want: []string{"tls.key_file: DIR/node.key does not match the certificate in tls.cert_file: tls: private key does not match public key"},
		},
		{
			name: "client certificate",
			breakDir: func(t *testing.T, dir string) {
				admin, err := nodeCA(t, dir).IssueAdmin("admin@localhost", time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				installLeaf(t, dir, admin)
			},
			want: []string{
				"tls.cert_file: DIR/node.crt does not name node localhost (its DNS names: none)",
				"tls.cert_file: DIR/node.crt does not verify against tls.ca_file for server authentication: x509: certificate specifies an incompatible key usage",
			},
		},
		{
			name:     "key garbage",
			breakDir: func(t *testing.T, dir string) { writeFile(t, dir, "node.key", []byte("not a key\n")) },
			want:     []string{"tls.key_file: DIR/node.key: holds no PEM private key"},
		},
		{
			name:     "cert garbage",
			breakDir: func(t *testing.T, dir string) { writeFile(t, dir, "node.crt", []byte("not a certificate\n")) },
			want:     []string{"tls.cert_file: DIR/node.crt holds no PEM certificate"},
		},
		{
			name: "cert and key garbage",
			breakDir: func(t *testing.T, dir string) {
				writeFile(t, dir, "node.crt", []byte("not a certificate\n"))
				writeFile(t, dir, "node.key", []byte("not a key\n"))
			},
			want: []string{
				"tls.cert_file: DIR/node.crt holds no PEM certificate",
				"tls.key_file: DIR/node.key: holds no PEM private key",
			},
		},
		{
			name: "CA is not a CA",
			breakDir: func(t *testing.T, dir string) {
				// The admin certificate as the CA: not a CA, and the node
				// certificate does not verify against it.
				b, err := os.ReadFile(filepath.Join(dir, "admin.crt"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, "ca.crt", b)
			},
			want: []string{
				`tls.ca_file: DIR/ca.crt: certificate "CN=admin@localhost,OU=valise-admin" is not a CA certificate`,
				"tls.cert_file: DIR/node.crt does not verify against tls.ca_file",
			},
		},
		{
			name:     "corrupt signing key",
			breakDir: func(t *testing.T, dir string) { writeFile(t, dir, "signing.key", []byte("garbage")) },
			want:     []string{"node.signing_key_file: DIR/signing.key holds no PEM key"},
		},
		{
			name: "signing key not Ed25519",
			breakDir: func(t *testing.T, dir string) {
				writeFile(t, dir, "signing.key", issueServer(t, nodeCA(t, dir), "localhost").KeyPEM)
			},
			want: []string{"node.signing_key_file: DIR/signing.key is not an Ed25519 key"},
		},
		{
			name: "missing files are reported once",
			breakDir: func(t *testing.T, dir string) {
				for _, f := range []string{"node.crt", "signing.key"} {
					if err := os.Remove(filepath.Join(dir, f)); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: []string{
				"node.signing_key_file: stat DIR/signing.key: no such file or directory",
				"tls.cert_file: stat DIR/node.crt: no such file or directory",
			},
		},
		{
			name: "two problems",
			breakDir: func(t *testing.T, dir string) {
				installLeaf(t, dir, issueServer(t, nodeCA(t, dir), "other.example"))
				writeFile(t, dir, "signing.key", []byte("garbage"))
			},
			want: []string{
				"node.signing_key_file: DIR/signing.key holds no PEM key",
				"tls.cert_file: DIR/node.crt does not name node localhost",
			},
		},
		{
			name: "declared peers",
			breakDir: func(t *testing.T, dir string) {
				cfg, err := config.Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, "good.pem", ca)
				cfg.Federation.Peers = []config.Peer{
					{Name: "b.example", Address: "b.example:7444", CABundleFile: "good.pem"},
					{Name: "c.example", Address: "c.example:7444", CABundleFile: "node.crt"},
					{Name: "d.example", Address: "d.example", CABundleFile: "missing.pem"},
					{Name: "b.example", Address: "b.example:7444", CABundleFile: "good.pem"},
					{Name: "localhost", Address: "x:1", CABundleFile: "good.pem"},
				}
				b, err := cfg.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, config.FileName, b)
			},
			want: []string{
				"federation.peers[1].ca_bundle_file: DIR/node.crt: ",
				`federation.peers[2].address: "d.example" is not HOST:PORT`,
				"federation.peers[2].ca_bundle_file: ",
				"federation.peers[3].name: b.example is declared twice",
				"federation.peers[4].name: localhost is this node's own name",
			},
		},
		{
			name: "config and certificate problems",
			breakDir: func(t *testing.T, dir string) {
				cfg, err := config.Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Listen.Client = "nonsense"
				b, err := cfg.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, config.FileName, b)
				writeFile(t, dir, "node.key", issueServer(t, nodeCA(t, dir), "localhost").KeyPEM)
			},
			want: []string{
				`listen.client: "nonsense" is not HOST:PORT`,
				"tls.key_file: DIR/node.key does not match",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newNodeDir(t, "sqlite")
			tc.breakDir(t, dir)
			code, out, errOut := runCheck(t, dir)
			if code != 1 {
				t.Fatalf("check = %d, want 1; stdout %q, stderr:\n%s", code, out, errOut)
			}
			if out != "" {
				t.Errorf("failed check printed %q to stdout", out)
			}
			got := problemLines(t, errOut)
			if len(got) != len(tc.want) {
				t.Fatalf("check reported %d problems, want %d:\n%s", len(got), len(tc.want), errOut)
			}
			for i, w := range tc.want {
				w = strings.ReplaceAll(w, "DIR", dir)
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}

// TestCheckExpirySoon checks that a certificate ending within 14 days is
// a warning, not a failure.
func TestCheckExpirySoon(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	now := time.Now()
	installLeaf(t, dir, issueAt(t, nodeCA(t, dir), []string{"localhost"}, now.Add(-time.Hour), now.Add(5*24*time.Hour)))
	code, out, errOut := runCheck(t, dir)
	if code != 0 {
		t.Fatalf("check = %d, want 0; stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, ": ok (") {
		t.Errorf("check printed %q, want ok", out)
	}
	want := "warning: tls.cert_file: " + filepath.Join(dir, "node.crt") + `: certificate "CN=localhost" expires at `
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) || !strings.HasSuffix(lines[0], ", in 5.0 days") {
		t.Errorf("check stderr = %q, want one line starting %q and ending in 5.0 days", errOut, want)
	}
}

// TestCheckPostgresDSN checks that an unreadable DSN file is a problem of
// a postgres node, without connecting to any database.
func TestCheckPostgresDSN(t *testing.T) {
	t.Setenv("VALISE_POSTGRES_DSN", "")
	dir := filepath.Join(t.TempDir(), "node")
	if _, err := initNode(initParams{Dir: dir, Name: "localhost", Client: "127.0.0.1:0", PostgresDN: "postgres://nowhere.invalid/valise"}); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCheck(t, dir); code != 0 {
		t.Fatalf("check of a fresh postgres node = %d, want 0; stderr:\n%s", code, errOut)
	}
	dsn := filepath.Join(dir, "postgres.dsn")
	for _, tc := range []struct {
		name, want string
		breakDir   func() error
	}{
		{"empty", "storage.postgres.dsn_file: " + dsn + " is empty", func() error { return os.WriteFile(dsn, []byte("\n"), 0o600) }},
		{"unreadable", "storage.postgres.dsn_file: read " + dsn + ": is a directory", func() error {
			if err := os.Remove(dsn); err != nil {
				return err
			}
			return os.Mkdir(dsn, 0o700)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.breakDir(); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCheck(t, dir)
			if code != 1 {
				t.Fatalf("check = %d, want 1; stderr:\n%s", code, errOut)
			}
			if got := problemLines(t, errOut); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("problems = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestServeRefusesWhatCheckRefuses checks that serve will not start with a
// certificate check reports, here an expired one.
func TestServeRefusesWhatCheckRefuses(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	now := time.Now()
	installLeaf(t, dir, issueAt(t, nodeCA(t, dir), []string{"localhost"}, now.Add(-48*time.Hour), now.Add(-time.Hour)))
	var out, errOut strings.Builder
	code := run(t.Context(), []string{"serve", "--data", dir}, strings.NewReader(""), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "tls.cert_file:") || !strings.Contains(errOut.String(), "expired") {
		t.Fatalf("serve with an expired certificate: exit %d, stderr:\n%s", code, errOut.String())
	}
}
