package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Certificate kinds of the expiry metric.
const (
	KindNode         = "node"              // the node certificate (node.crt's leaf)
	KindIntermediate = "node_intermediate" // a further certificate of node.crt's chain
	KindCA           = "ca"                // tls.ca_file: the organization's CA, also the admin CA
	KindPeerCA       = "peer_ca"           // a certificate of a peer's CA bundle
)

// HeldCert is one certificate a node holds, as the expiry metric names it:
// Kind is one of the Kind constants and Name the node, CA or peer it
// belongs to.
type HeldCert struct {
	Kind, Name string
	Cert       *x509.Certificate
}

var expiryDesc = prometheus.NewDesc(
	"valise_certificate_expiry_timestamp_seconds",
	"NotAfter of every certificate the node holds, in Unix seconds, by kind (node, node_intermediate, ca, peer_ca), "+
		"name (the node, CA or peer), subject and SHA-256 fingerprint of the DER.",
	[]string{"kind", "name", "subject", "sha256"}, nil)

// ExpiryCollector exports valise_certificate_expiry_timestamp_seconds for
// the certificates its sources return, asked afresh at every scrape, so a
// reloaded certificate or a changed peer list shows at the next scrape and
// nothing runs between scrapes.
type ExpiryCollector struct {
	sources []func(yield func(HeldCert))
}

// NewExpiryCollector returns a collector over sources; each source calls
// yield once per certificate it holds.
func NewExpiryCollector(sources ...func(yield func(HeldCert))) *ExpiryCollector {
	return &ExpiryCollector{sources: sources}
}

// Describe implements prometheus.Collector.
func (c *ExpiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect implements prometheus.Collector. A certificate yielded twice
// under the same labels is exported once.
func (c *ExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[[4]string]bool{}
	for _, src := range c.sources {
		src(func(h HeldCert) {
			sum := sha256.Sum256(h.Cert.Raw)
			l := [4]string{h.Kind, h.Name, h.Cert.Subject.String(), hex.EncodeToString(sum[:])}
			if seen[l] {
				return
			}
			seen[l] = true
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
				float64(h.Cert.NotAfter.Unix()), l[:]...)
		})
	}
}

// NodeCerts is a source for NewExpiryCollector: the leaf (as name) and the
// further chain certificates of the reloader's current certificate.
func (r *CertReloader) NodeCerts(name string) func(yield func(HeldCert)) {
	return func(yield func(HeldCert)) {
		c := r.Get()
		if c == nil {
			return
		}
		if c.Leaf != nil {
			yield(HeldCert{Kind: KindNode, Name: name, Cert: c.Leaf})
		}
		for _, der := range c.Certificate[1:] {
			if ic, err := x509.ParseCertificate(der); err == nil {
				yield(HeldCert{Kind: KindIntermediate, Name: ic.Subject.CommonName, Cert: ic})
			}
		}
	}
}

// FileCerts is a source for NewExpiryCollector: every certificate of the
// PEM file path, each named by its subject's common name. The file is
// re-read when it changes (size, time or content); if it cannot be read or
// parsed, the certificates last read stay.
func FileCerts(kind, path string) func(yield func(HeldCert)) {
	var (
		mu    sync.Mutex
		seen  fileStamp
		certs []*x509.Certificate
	)
	return func(yield func(HeldCert)) {
		mu.Lock()
		if st := stamp(path); st != seen {
			seen = st
			if cs, err := LoadCerts(path); err == nil {
				certs = cs
			}
		}
		cs := certs
		mu.Unlock()
		for _, c := range cs {
			yield(HeldCert{Kind: kind, Name: c.Subject.CommonName, Cert: c})
		}
	}
}
