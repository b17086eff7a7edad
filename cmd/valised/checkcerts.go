package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
	"github.com/valise-im/valise/server"
)

// expiryWarning is how close to its end a certificate's validity makes
// check warn.
const expiryWarning = 14 * 24 * time.Hour

// findings collects what check finds: problems (check fails) and warnings
// (check passes), each "PATH: message" with PATH a config path.
type findings struct {
	problems []string
	warnings []string
	// bad holds the config paths that already have a problem, so that a
	// missing file is not reported again by every check that reads it.
	bad map[string]bool
}

func newFindings() *findings { return &findings{bad: map[string]bool{}} }

func (f *findings) problem(path, format string, args ...any) {
	f.problems = append(f.problems, path+": "+fmt.Sprintf(format, args...))
	f.bad[path] = true
}

func (f *findings) warn(path, format string, args ...any) {
	f.warnings = append(f.warnings, path+": "+fmt.Sprintf(format, args...))
}

// addValidation records the problems config.Validate reported.
func (f *findings) addValidation(err error) {
	if err == nil {
		return
	}
	var ps config.Problems
	if !errors.As(err, &ps) {
		f.problem("config", "%v", err)
		return
	}
	for _, p := range ps {
		f.problems = append(f.problems, p)
		if path, _, ok := strings.Cut(p, ": "); ok {
			f.bad[path] = true
		}
	}
}

// checkFiles checks the contents of the files cfg names: the TLS
// certificates and keys, the signing key, the CA bundles of declared peers
// and the PostgreSQL DSN file. A
// file whose path already has a problem is skipped. now is the time
// certificates must be valid at.
func checkFiles(f *findings, dir string, cfg config.Config, now time.Time) {
	if !f.bad["node.signing_key_file"] {
		// loadSigningKey's errors already start with the config path.
		if _, err := loadSigningKey(config.Path(dir, cfg.Node.SigningKeyFile)); err != nil {
			f.problems = append(f.problems, err.Error())
			f.bad["node.signing_key_file"] = true
		}
	}
	checkTLS(f, dir, cfg, now)
	for i, p := range cfg.Federation.Peers {
		path := fmt.Sprintf("federation.peers[%d].ca_bundle_file", i)
		if f.bad[path] {
			continue
		}
		b, err := os.ReadFile(config.Path(dir, p.CABundleFile))
		if err == nil {
			_, _, err = server.CheckPeerCABundle(b)
		}
		if err != nil {
			f.problem(path, "%s: %v", config.Path(dir, p.CABundleFile), err)
		}
	}
	if cfg.Storage.Driver == "postgres" && cfg.Storage.Postgres.DSNFile != "" &&
		os.Getenv("VALISE_POSTGRES_DSN") == "" && !f.bad["storage.postgres.dsn_file"] {
		path := config.Path(dir, cfg.Storage.Postgres.DSNFile)
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			f.problem("storage.postgres.dsn_file", "%v", err)
		case strings.TrimSpace(string(b)) == "":
			f.problem("storage.postgres.dsn_file", "%s is empty", path)
		}
	}
}

// checkTLS checks that the CA file holds CA certificates, that the node
// certificate names the node, verifies against the CA for server
// authentication and is valid at now, and that the key matches it.
func checkTLS(f *findings, dir string, cfg config.Config, now time.Time) {
	var roots *x509.CertPool
	if !f.bad["tls.ca_file"] {
		path := config.Path(dir, cfg.TLS.CAFile)
		cas, err := readCerts(path)
		if err != nil {
			f.problem("tls.ca_file", "%v", err)
		} else {
			roots = x509.NewCertPool()
			for _, ca := range cas {
				roots.AddCert(ca)
				if !ca.BasicConstraintsValid || !ca.IsCA {
					f.problem("tls.ca_file", "%s: certificate %q is not a CA certificate", path, ca.Subject)
				}
				checkValidity(f, "tls.ca_file", fmt.Sprintf("%s: CA certificate %q", path, ca.Subject), ca, now)
			}
		}
	}
	certPath := config.Path(dir, cfg.TLS.CertFile)
	certOK := !f.bad["tls.cert_file"] && checkNodeCert(f, certPath, cfg.Node.Name, roots, now)
	if f.bad["tls.key_file"] {
		return
	}
	keyPath := config.Path(dir, cfg.TLS.KeyFile)
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		f.problem("tls.key_file", "%v", err)
		return
	}
	if err := parsePrivateKey(keyPEM); err != nil {
		f.problem("tls.key_file", "%s: %v", keyPath, err)
		return
	}
	if !certOK {
		return
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		f.problem("tls.cert_file", "%v", err)
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		f.problem("tls.key_file", "%s does not match the certificate in tls.cert_file: %v", keyPath, err)
	}
}

// checkNodeCert checks the node certificate in certPath: valid at now,
// naming node (unless node.name has a problem) and, with roots, verifying
// against them for server authentication. It returns whether the file
// holds a certificate to match the key against.
func checkNodeCert(f *findings, certPath, node string, roots *x509.CertPool, now time.Time) bool {
	chain, err := readCerts(certPath)
	if err != nil {
		f.problem("tls.cert_file", "%v", err)
		return false
	}
	checkNodeChain(f, certPath, chain, node, roots, now)
	return true
}

// checkNodeChain checks a node certificate chain read from certPath (the
// leaf first): valid at now, naming node (unless node.name has a
// problem) and, with roots, verifying against them for server
// authentication.
func checkNodeChain(f *findings, certPath string, chain []*x509.Certificate, node string, roots *x509.CertPool, now time.Time) {
	leaf := chain[0]
	what := fmt.Sprintf("%s: certificate %q", certPath, leaf.Subject)
	expired := checkValidity(f, "tls.cert_file", what, leaf, now)
	if !f.bad["node.name"] {
		if err := leaf.VerifyHostname(node); err != nil {
			names := strings.Join(leaf.DNSNames, ", ")
			if names == "" {
				names = "none"
			}
			f.problem("tls.cert_file", "%s does not name node %s (its DNS names: %s)", certPath, node, names)
		}
	}
	if roots != nil {
		// An expired certificate is reported above; the chain is verified
		// at a time the certificate was valid, to report a wrong CA too.
		at := now
		if expired {
			at = leaf.NotAfter
			if now.Before(leaf.NotBefore) {
				at = leaf.NotBefore
			}
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil && !isExpiredElsewhere(err, expired || f.bad["tls.ca_file"]) {
			f.problem("tls.cert_file", "%s does not verify against tls.ca_file for server authentication: %v", certPath, err)
		}
	}
}

// reloadCheck returns the check the node applies to every node
// certificate it loads, at start and on each reload: what `valised check`
// requires of tls.cert_file (valid now, naming the node, verifying
// against tls.ca_file as it is at that moment). A certificate that fails
// it is not used; the node keeps the one it has.
func reloadCheck(dir string, cfg config.Config) func(*tls.Certificate) error {
	certPath := config.Path(dir, cfg.TLS.CertFile)
	caPath := config.Path(dir, cfg.TLS.CAFile)
	return func(c *tls.Certificate) error {
		f := newFindings()
		var roots *x509.CertPool
		if cas, err := readCerts(caPath); err != nil {
			f.problem("tls.ca_file", "%v", err)
		} else {
			roots = x509.NewCertPool()
			for _, ca := range cas {
				roots.AddCert(ca)
			}
		}
		chain := make([]*x509.Certificate, len(c.Certificate))
		for i, der := range c.Certificate {
			var err error
			if chain[i], err = x509.ParseCertificate(der); err != nil {
				return fmt.Errorf("%s: %w", certPath, err)
			}
		}
		checkNodeChain(f, certPath, chain, cfg.Node.Name, roots, time.Now())
		if len(f.problems) > 0 {
			return errors.New(strings.Join(f.problems, "; "))
		}
		return nil
	}
}

// isExpiredElsewhere reports whether a verification error only says that
// a certificate of the chain is outside its validity, and explained says
// that needs no report: either the leaf's own expiry is reported and the
// chain was verified at another time than now, or tls.ca_file already has
// a problem.
func isExpiredElsewhere(err error, explained bool) bool {
	var inv x509.CertificateInvalidError
	return explained && errors.As(err, &inv) && inv.Reason == x509.Expired
}

// checkValidity reports a certificate outside its validity at now as a
// problem, and one that ends within expiryWarning as a warning. It returns
// whether the certificate is outside its validity.
func checkValidity(f *findings, path, what string, c *x509.Certificate, now time.Time) bool {
	const layout = time.RFC3339
	switch {
	case now.After(c.NotAfter):
		f.problem(path, "%s expired at %s", what, c.NotAfter.UTC().Format(layout))
		return true
	case now.Before(c.NotBefore):
		f.problem(path, "%s is not valid until %s", what, c.NotBefore.UTC().Format(layout))
		return true
	case c.NotAfter.Sub(now) < expiryWarning:
		f.warn(path, "%s expires at %s, in %.1f days", what, c.NotAfter.UTC().Format(layout), c.NotAfter.Sub(now).Hours()/24)
	}
	return false
}

// readCerts parses every CERTIFICATE block of a PEM file; it fails if
// there is none or one does not parse.
func readCerts(path string) ([]*x509.Certificate, error) { return pki.LoadCerts(path) }

// parsePrivateKey checks that b holds a PEM private key in one of the
// encodings crypto/tls accepts.
func parsePrivateKey(b []byte) error {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return errors.New("holds no PEM private key")
		}
		if block.Type != "PRIVATE KEY" && !strings.HasSuffix(block.Type, " PRIVATE KEY") {
			continue
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return nil
		}
		return fmt.Errorf("%s block is not a PKCS #8, SEC 1 or PKCS #1 private key", block.Type)
	}
}
