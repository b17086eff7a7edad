package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// globals are the flags every command accepts.
type globals struct {
	data       string
	socket     string
	addr       string
	cert       string
	key        string
	ca         string
	serverName string
	json       bool
	timeout    time.Duration
}

// defaultGlobals returns the defaults; --data defaults to $VALISE_DATA.
func defaultGlobals() globals {
	data := os.Getenv("VALISE_DATA")
	if data == "" {
		data = "./valise-dev"
	}
	return globals{data: data, timeout: 10 * time.Second}
}

// register defines the global flags on fs. The current values are the
// defaults, so registering on the command's flag set after the top-level
// parse keeps what was given before the command.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.data, "data", g.data, "node data directory")
	fs.StringVar(&g.socket, "socket", g.socket, "admin socket path")
	fs.StringVar(&g.addr, "addr", g.addr, "remote admin listener HOST:PORT")
	fs.StringVar(&g.cert, "cert", g.cert, "admin client certificate (PEM)")
	fs.StringVar(&g.key, "key", g.key, "admin client private key (PEM)")
	fs.StringVar(&g.ca, "ca", g.ca, "CA certificates that verify the node (PEM)")
	fs.StringVar(&g.serverName, "server-name", g.serverName, "name in the node's certificate")
	fs.BoolVar(&g.json, "json", g.json, "print JSON")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each call")
}

// dial returns a client connection to the node: over mutual TLS when
// --addr is given, else over the admin unix socket. The connection is
// lazy; errors reaching the node surface on the first call.
func (g *globals) dial() (*grpc.ClientConn, error) {
	if g.addr == "" {
		if g.cert != "" || g.key != "" || g.ca != "" || g.serverName != "" {
			return nil, usageErrorf("--cert, --key, --ca and --server-name need --addr")
		}
		return dialSocket(g.socketPath())
	}
	if g.socket != "" {
		return nil, usageErrorf("--socket and --addr cannot be used together")
	}
	if g.cert == "" || g.key == "" || g.ca == "" {
		return nil, usageErrorf("--addr needs --cert, --key and --ca")
	}
	cfg, err := g.tlsConfig()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", g.addr, err)
	}
	return conn, nil
}

func (g *globals) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	return filepath.Join(g.data, "admin.sock")
}

// dialSocket checks that path is a socket, for a clearer message than the
// transport's when the node is not running, and connects to it.
func dialSocket(path string) (*grpc.ClientConn, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w (is valised running? see --data and --socket)", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("admin socket: %s is not a socket", abs)
	}
	conn, err := grpc.NewClient("unix://"+abs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", abs, err)
	}
	return conn, nil
}

// tlsConfig builds the TLS 1.3 client configuration: the admin
// certificate, and the node verified against --ca under --server-name (or
// the host of --addr).
func (g *globals) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(g.cert, g.key)
	if err != nil {
		return nil, fmt.Errorf("--cert/--key: %w", err)
	}
	caPEM, err := os.ReadFile(g.ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--ca: no PEM certificate in %s", g.ca)
	}
	name := g.serverName
	if name == "" {
		host, _, err := net.SplitHostPort(g.addr)
		if err != nil {
			return nil, usageErrorf("--addr %q: %v", g.addr, err)
		}
		name = host
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   name,
	}, nil
}
