package pki

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CertReloader holds a certificate and key loaded from files and reloads
// them on demand, on a signal or when the files change, so listeners pick
// up a rotated certificate without a restart. It is safe for concurrent
// use.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	check             func(*tls.Certificate) error
	cert              atomic.Pointer[tls.Certificate]

	mu                sync.Mutex // serializes loads; guards the stamps
	certSeen, keySeen fileStamp  // the files as of the last load attempt
}

// NewCertReloader loads the pair from certFile and keyFile. check, if not
// nil, judges every pair loaded (the first one too) after it parsed and
// matched: a pair it refuses is not used.
func NewCertReloader(certFile, keyFile string, log *slog.Logger, check func(*tls.Certificate) error) (*CertReloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, check: check}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Get returns the current certificate.
func (r *CertReloader) Get() *tls.Certificate { return r.cert.Load() }

// GetCertificate is Get in the form ServerTLS and AdminServerTLS take.
func (r *CertReloader) GetCertificate() (*tls.Certificate, error) { return r.cert.Load(), nil }

// Reload re-reads both files and swaps the certificate only if the new
// pair parses, the key matches and the check passes; otherwise the
// current certificate stays and the error is returned.
func (r *CertReloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Stamped before reading: a change racing the read costs at most one
	// extra reload, never a missed one.
	r.certSeen, r.keySeen = stamp(r.certFile), stamp(r.keyFile)
	c, err := loadPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	if r.check != nil {
		if err := r.check(c); err != nil {
			return fmt.Errorf("pki: %s refused: %w", r.certFile, err)
		}
	}
	r.cert.Store(c)
	return nil
}

func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: load %s, %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("pki: parse %s: %w", certFile, err)
		}
	}
	return &c, nil
}

// fileStamp is what Run compares to notice a changed file: modification
// time and size, and a digest of the content, since a replacement can keep
// both (same-size PEM written within the file system's time granularity).
type fileStamp struct {
	mod  time.Time
	size int64
	sum  [sha256.Size]byte
	ok   bool
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), sum: sha256.Sum256(b), ok: true}
}

// Run reloads the pair when a value arrives on sighup (which may be nil)
// or when either file's modification time, size or content changed since
// the last load attempt, checked every every, until ctx ends. A failed
// reload keeps the current certificate and is logged; it is retried once
// the files change again (or on the next signal).
func (r *CertReloader) Run(ctx context.Context, every time.Duration, sighup <-chan os.Signal) {
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var trigger string
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sighup:
			if !ok {
				sighup = nil
				continue
			}
			trigger = "signal"
		case <-t.C:
			if !r.changed() {
				continue
			}
			trigger = "file change"
		}
		r.reloadAndLog(ctx, trigger)
	}
}

// changed reports whether either file differs from the last load attempt.
func (r *CertReloader) changed() bool {
	c, k := stamp(r.certFile), stamp(r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	return c != r.certSeen || k != r.keySeen
}

func (r *CertReloader) reloadAndLog(ctx context.Context, trigger string) {
	if err := r.Reload(); err != nil {
		r.log.WarnContext(ctx, "certificate not reloaded, keeping the current one",
			"trigger", trigger, "cert_file", r.certFile, "err", err.Error())
		return
	}
	leaf := r.Get().Leaf
	r.log.InfoContext(ctx, "certificate reloaded", "trigger", trigger, "cert_file", r.certFile,
		"serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}
