package main

import (
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/federation"
	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
)

// registerCertExpiry exports valise_certificate_expiry_timestamp_seconds
// for every certificate the node holds: the node certificate and its chain
// as currently loaded (a reload shows at the next scrape), the CA file
// (tls.ca_file, which also verifies admin certificates; re-read when it
// changes) and every certificate of every peer's CA bundle as of the last
// peer list reload. It all runs at scrape time, nothing on a hot path.
func registerCertExpiry(reg prometheus.Registerer, dir string, cfg config.Config, name valise.NodeName,
	certs *pki.CertReloader, trust *federation.Trust) {
	peers := func(yield func(pki.HeldCert)) {
		trust.PeerCAs(func(peer valise.NodeName, ca *x509.Certificate) {
			yield(pki.HeldCert{Kind: pki.KindPeerCA, Name: string(peer), Cert: ca})
		})
	}
	reg.MustRegister(pki.NewExpiryCollector(
		certs.NodeCerts(string(name)),
		pki.FileCerts(pki.KindCA, config.Path(dir, cfg.TLS.CAFile)),
		peers,
	))
}
