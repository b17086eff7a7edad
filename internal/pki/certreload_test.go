package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func issueLeaf(t *testing.T, ca *CA) Leaf {
	t.Helper()
	l, err := ca.IssueServer([]string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writeLeaf(t *testing.T, dir string, l Leaf) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	writeFile(t, keyFile, l.KeyPEM)
	writeFile(t, certFile, l.CertPEM)
	return certFile, keyFile
}

func newReloader(t *testing.T) (r *CertReloader, ca *CA, dir string, logs *syncBuf) {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	certFile, keyFile := writeLeaf(t, dir, issueLeaf(t, ca))
	logs = &syncBuf{}
	r, err = NewCertReloader(certFile, keyFile, slog.New(slog.NewJSONHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, ca, dir, logs
}

func serialOf(c *tls.Certificate) string { return c.Leaf.SerialNumber.String() }

func TestNewCertReloaderRefusesBadPair(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	writeFile(t, c, []byte("garbage"))
	writeFile(t, k, []byte("garbage"))
	if _, err := NewCertReloader(c, k, nil, nil); err == nil {
		t.Fatal("NewCertReloader accepted garbage")
	}
	if _, err := NewCertReloader(filepath.Join(dir, "missing.crt"), k, nil, nil); err == nil {
		t.Fatal("NewCertReloader accepted a missing file")
	}
}

func TestCertReloaderReload(t *testing.T) {
	r, ca, dir, _ := newReloader(t)
	old := r.Get()
	if got, err := r.GetCertificate(); err != nil || got != old {
		t.Fatalf("GetCertificate = %v, %v; want the current certificate", got, err)
	}

	next := issueLeaf(t, ca)
	writeLeaf(t, dir, next)
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if serialOf(r.Get()) == serialOf(old) {
		t.Fatal("Reload kept the old certificate")
	}
	want := r.Get()

	// A mismatched pair (new key, old certificate: a rotation half done)
	// keeps the current certificate.
	writeFile(t, filepath.Join(dir, "node.key"), issueLeaf(t, ca).KeyPEM)
	if err := r.Reload(); err == nil {
		t.Fatal("Reload accepted a mismatched pair")
	}
	if r.Get() != want {
		t.Fatal("a mismatched pair replaced the certificate")
	}

	// A garbage or half-written certificate keeps it too.
	writeFile(t, filepath.Join(dir, "node.key"), next.KeyPEM)
	writeFile(t, filepath.Join(dir, "node.crt"), next.CertPEM[:len(next.CertPEM)/2])
	if err := r.Reload(); err == nil {
		t.Fatal("Reload accepted a truncated certificate")
	}
	if r.Get() != want {
		t.Fatal("a truncated certificate replaced the certificate")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runReloader(t *testing.T, r *CertReloader, every time.Duration, hup chan os.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, every, hup); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestCertReloaderRunFileChange(t *testing.T) {
	r, ca, dir, logs := newReloader(t)
	old := serialOf(r.Get())
	runReloader(t, r, 10*time.Millisecond, nil)

	// Key first: the poll may see the mismatched pair in between and must
	// keep the old certificate until the certificate follows.
	next := issueLeaf(t, ca)
	writeLeaf(t, dir, next)
	waitFor(t, "the file change", func() bool { return serialOf(r.Get()) != old })
	waitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), "certificate reloaded") })
	if l := logs.String(); !strings.Contains(l, serialOf(r.Get())) || !strings.Contains(l, "not_after") {
		t.Fatalf("reload log lacks serial or not_after:\n%s", l)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatal("logs contain key material")
	}

	// A broken file is logged at warn and changes nothing.
	cur := r.Get()
	warns := strings.Count(logs.String(), `"level":"WARN"`)
	writeFile(t, filepath.Join(dir, "node.crt"), []byte("garbage"))
	waitFor(t, "the warning", func() bool { return strings.Count(logs.String(), `"level":"WARN"`) > warns })
	if r.Get() != cur {
		t.Fatal("a broken file replaced the certificate")
	}
}

func TestCertReloaderRunSignal(t *testing.T) {
	r, ca, dir, logs := newReloader(t)
	old := serialOf(r.Get())
	hup := make(chan os.Signal, 1)
	runReloader(t, r, time.Hour, hup) // the poll never fires

	writeLeaf(t, dir, issueLeaf(t, ca))
	time.Sleep(20 * time.Millisecond)
	if serialOf(r.Get()) != old {
		t.Fatal("reloaded before the signal")
	}
	hup <- syscall.SIGHUP
	waitFor(t, "the signal reload", func() bool { return serialOf(r.Get()) != old })
	waitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), `"trigger":"signal"`) })
}

// TestCertReloaderCheck checks that a pair the check refuses is not used,
// at start or on reload, and that the current certificate stays.
func TestCertReloaderCheck(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := writeLeaf(t, dir, issueLeaf(t, ca))
	refuse := false
	check := func(c *tls.Certificate) error {
		if refuse {
			return errors.New("not for this node")
		}
		return nil
	}
	r, err := NewCertReloader(certFile, keyFile, nil, check)
	if err != nil {
		t.Fatal(err)
	}
	old := r.Get()
	refuse = true
	writeLeaf(t, dir, issueLeaf(t, ca))
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "not for this node") {
		t.Fatalf("Reload of a refused pair = %v, want the check's error", err)
	}
	if r.Get() != old {
		t.Fatal("a refused pair replaced the current certificate")
	}
	if _, err := NewCertReloader(certFile, keyFile, nil, check); err == nil {
		t.Fatal("NewCertReloader used a pair the check refuses")
	}
	refuse = false
	if err := r.Reload(); err != nil || r.Get() == old {
		t.Fatalf("Reload after the check passes = %v; want the new certificate", err)
	}
}
