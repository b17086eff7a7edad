package client

import (
	"context"
	"testing"
)

func TestBearerRefusesInsecureTransport(t *testing.T) {
	b := &bearer{}
	b.set("tok")
	if md, err := b.GetRequestMetadata(context.Background()); err == nil {
		t.Errorf("token sent without transport security: %v", md)
	}
	if !b.RequireTransportSecurity() {
		t.Error("RequireTransportSecurity is false")
	}
}

func TestServerNameAndRoots(t *testing.T) {
	for server, want := range map[string]string{"node.example:443": "node.example", "[::1]:7443": "::1", "127.0.0.1:1": "127.0.0.1"} {
		if got, err := serverName(server, ""); err != nil || got != want {
			t.Errorf("serverName(%q) = %q, %v; want %q", server, got, err, want)
		}
	}
	if got, _ := serverName("a:1", "other"); got != "other" {
		t.Errorf("explicit server name ignored: %q", got)
	}
	if _, err := serverName("no-port", ""); err == nil {
		t.Error("a server without a port was accepted")
	}
	if pool, err := rootsFor(Config{}, ""); pool != nil || err != nil {
		t.Errorf("no CAs: %v, %v; want the system roots (nil)", pool, err)
	}
	if _, err := rootsFor(Config{RootCAsPEM: []byte("not pem")}, ""); err == nil {
		t.Error("garbage CA accepted")
	}
	caPEM, _ := testCertificates(t)
	if pool, err := rootsFor(Config{}, string(caPEM)); pool == nil || err != nil {
		t.Errorf("saved CA: %v, %v", pool, err)
	}
}
