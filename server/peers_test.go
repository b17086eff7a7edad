package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/valise-im/valise"
)

// testCertPEM returns a self-signed certificate, a CA or not, as PEM.
func testCertPEM(t *testing.T, isCA bool) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCheckPeerAddress(t *testing.T) {
	for addr, ok := range map[string]bool{
		"b.example:7443":   true,
		"127.0.0.1:1":      true,
		"[::1]:65535":      true,
		"b.example":        false,
		":7443":            false,
		"b.example:0":      false,
		"b.example:+1":     false,
		"b.example:http":   false,
		"b.example:7443:1": false,
		"b example:7443":   false,
		"b.example:65536":  false,
		"":                 false,
	} {
		if err := checkPeerAddress(addr); (err == nil) != ok {
			t.Errorf("checkPeerAddress(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}

func TestParseCABundle(t *testing.T) {
	ca1, ca2, leaf := testCertPEM(t, true), testCertPEM(t, true), testCertPEM(t, false)
	join := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	tests := []struct {
		name   string
		bundle []byte
		want   int // certificates; 0 for an error
	}{
		{"one CA", ca1, 1},
		{"two CAs with text around them", join([]byte("# root one\n"), ca1, []byte("# root two\n"), ca2, []byte("\n\n")), 2},
		{"empty", nil, 0},
		{"garbage", []byte("garbage"), 0},
		{"a leaf", leaf, 0},
		{"a CA and a leaf", join(ca1, leaf), 0},
		{"a key block", join(ca1, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("k")})), 0},
		{"a certificate block of junk", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0},
		{"trailing garbage", join(ca1, []byte("-----BEGIN CERT")), 0},
		{"too large", join(ca1, make([]byte, MaxPeerCABundle)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, out, err := parseCABundle(tt.bundle)
			if tt.want == 0 {
				if err == nil || valise.KindOf(err) != valise.KindInvalid {
					t.Fatalf("got %d certs, err %v; want an invalid-argument error", len(certs), err)
				}
				return
			}
			if err != nil || len(certs) != tt.want {
				t.Fatalf("got %d certs, err %v; want %d", len(certs), err, tt.want)
			}
			if fps := CAFingerprints(out); len(fps) != tt.want || len(fps[0]) != 64 {
				t.Errorf("fingerprints of the stored bundle = %q", fps)
			}
		})
	}
}
