package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
)

// ServerTLS returns a TLS 1.3-only server configuration presenting the
// certificate cert returns; cert is called per handshake, so a rotated
// certificate (see CertReloader) applies without restart. With clientCAs
// set, clients must present a certificate signed by one of them.
func ServerTLS(cert func() (*tls.Certificate, error), clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert()
		},
	}
	if clientCAs != nil {
		cfg.ClientCAs = clientCAs
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// AdminServerTLS is ServerTLS for the remote admin listener: clients need a
// certificate from clientCAs whose subject has the AdminOU unit.
func AdminServerTLS(cert func() (*tls.Certificate, error), clientCAs *x509.CertPool) *tls.Config {
	cfg := ServerTLS(cert, clientCAs)
	cfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return errors.New("pki: no verified client certificate")
		}
		if !slices.Contains(chains[0][0].Subject.OrganizationalUnit, AdminOU) {
			return errors.New("pki: client certificate is not an admin certificate")
		}
		return nil
	}
	return cfg
}

// ClientTLS returns a TLS 1.3-only client configuration trusting roots and
// expecting serverName; cert, if not nil, is presented to the server.
func ClientTLS(roots *x509.CertPool, serverName string, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		ServerName: serverName,
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}
