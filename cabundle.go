package valise

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
)

// ParseCABundle parses the PEM bundle of CA certificates trusted for a
// federation peer, strictly: every block must be an X.509 CA certificate,
// nothing but white space may follow the last one, and there must be at
// least one. Errors are KindInvalid with public text.
func ParseCABundle(bundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bundle
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, Errorf(KindInvalid, "CA bundle block %d is a %q, not a CERTIFICATE", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, Errorf(KindInvalid, "CA bundle block %d is not an X.509 certificate", len(certs)+1)
		}
		if !c.IsCA {
			return nil, Errorf(KindInvalid, "CA bundle certificate %d (%s) is not a CA certificate", len(certs)+1, c.Subject)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, Errorf(KindInvalid, "CA bundle holds no PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, Errorf(KindInvalid, "CA bundle has data after its last certificate")
	}
	return certs, nil
}
