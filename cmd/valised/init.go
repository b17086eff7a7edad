package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
)

var errUsage = errors.New("usage")

// Certificate lifetimes written by init.
const (
	caValidity    = 10 * 365 * 24 * time.Hour
	leafValidity  = 365 * 24 * time.Hour
	adminValidity = 365 * 24 * time.Hour
)

// initParams are the choices of a new node.
type initParams struct {
	Dir        string
	Name       string
	Client     string
	Federation string
	Metrics    string
	Health     string
	PostgresDN string
	// ExtraIPs and ExtraNames are added to the node certificate's SANs.
	ExtraIPs   []net.IP
	ExtraNames []string
}

// initResult is what `valised init --json` prints.
type initResult struct {
	Name           string `json:"name"`
	DataDir        string `json:"data_dir"`
	ConfigFile     string `json:"config_file"`
	ClientAddr     string `json:"client_addr"`
	FederationAddr string `json:"federation_addr"`
	MetricsAddr    string `json:"metrics_addr"`
	HealthAddr     string `json:"health_addr"`
	CAFile         string `json:"ca_file"`
	AdminSocket    string `json:"admin_socket"`
	AdminCert      string `json:"admin_cert"`
	AdminKey       string `json:"admin_key"`
	StorageDriver  string `json:"storage_driver"`
}

func cmdInit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := config.Default()
	var p initParams
	var asJSON bool
	fs.StringVar(&p.Dir, "data", "", "the new node's data directory (required)")
	fs.StringVar(&p.Name, "name", "", "the node's federation name, a DNS name (required)")
	fs.StringVar(&p.Client, "client-addr", d.Listen.Client, "ClientService listen address")
	fs.StringVar(&p.Federation, "federation-addr", d.Listen.Federation, "federation listen address (mutual TLS with peers)")
	fs.StringVar(&p.Metrics, "metrics-addr", d.Listen.Metrics, "Prometheus metrics listen address; empty turns it off")
	fs.StringVar(&p.Health, "health-addr", d.Listen.Health, "plaintext gRPC health listen address for probes; empty (the default) turns it off")
	fs.StringVar(&p.PostgresDN, "postgres", "", "use PostgreSQL with this DSN (stored in postgres.dsn, mode 0600) instead of SQLite")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if p.Dir == "" || p.Name == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "valised init: --data and --name are required")
		fs.Usage()
		return errUsage
	}
	res, err := initNode(p)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "initialized node %s in %s\n  config:      %s\n  client:      %s\n  CA to trust: %s\n  admin:       %s\n  start it:    valised serve --data %s\n",
		res.Name, res.DataDir, res.ConfigFile, res.ClientAddr, res.CAFile, res.AdminSocket, res.DataDir)
	return nil
}

// initNode creates a node's data directory. It refuses a directory that
// already holds a config file, and removes what it wrote if it fails.
func initNode(p initParams) (initResult, error) {
	if _, err := valise.ParseNodeName(p.Name); err != nil {
		return initResult{}, fmt.Errorf("--name: %v", err)
	}
	dir, err := filepath.Abs(p.Dir)
	if err != nil {
		return initResult{}, err
	}
	cfgPath := filepath.Join(dir, config.FileName)
	if _, err := os.Stat(cfgPath); err == nil {
		return initResult{}, fmt.Errorf("%s exists: %s is already a node; refusing to overwrite it", cfgPath, dir)
	}
	driver := "sqlite"
	dsnRef := ""
	if p.PostgresDN != "" {
		driver, dsnRef = "postgres", "postgres.dsn"
	}
	cfgText, err := config.Render(config.FileParams{Name: p.Name, Client: p.Client, Federation: p.Federation, Metrics: p.Metrics, Health: p.Health, Driver: driver, PostgresDSNRef: dsnRef})
	if err != nil {
		return initResult{}, err
	}
	cfg := config.Default()
	if err := config.Decode(cfgText, &cfg); err != nil {
		return initResult{}, fmt.Errorf("rendering config: %w", err)
	}
	if err := cfg.Validate(dir, false); err != nil {
		return initResult{}, fmt.Errorf("invalid settings:\n%v", err)
	}
	created := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return initResult{}, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return initResult{}, err
	}
	var written []string
	write := func(name string, data []byte, mode os.FileMode) error {
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		written = append(written, path)
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	fail := func(err error) (initResult, error) {
		for _, w := range written {
			os.Remove(w)
		}
		if created {
			os.Remove(dir)
		}
		return initResult{}, err
	}
	ca, err := pki.NewCA(p.Name+" CA", caValidity)
	if err != nil {
		return fail(err)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return fail(err)
	}
	names := append([]string{p.Name}, p.ExtraNames...)
	leaf, err := ca.IssueServer(names, p.ExtraIPs, leafValidity)
	if err != nil {
		return fail(err)
	}
	admin, err := ca.IssueAdmin("admin@"+p.Name, adminValidity)
	if err != nil {
		return fail(err)
	}
	_, signing, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fail(err)
	}
	signingDER, err := x509.MarshalPKCS8PrivateKey(signing)
	if err != nil {
		return fail(err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", ca.CertPEM(), 0o644},
		{"ca.key", caKey, 0o600},
		{"node.crt", leaf.CertPEM, 0o644},
		{"node.key", leaf.KeyPEM, 0o600},
		{"admin.crt", admin.CertPEM, 0o644},
		{"admin.key", admin.KeyPEM, 0o600},
		{"signing.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: signingDER}), 0o600},
	}
	if p.PostgresDN != "" {
		files = append(files, struct {
			name string
			data []byte
			mode os.FileMode
		}{"postgres.dsn", []byte(p.PostgresDN + "\n"), 0o600})
	}
	for _, f := range files {
		if err := write(f.name, f.data, f.mode); err != nil {
			return fail(err)
		}
	}
	// The config goes last: its presence marks a complete node.
	if err := write(config.FileName, cfgText, 0o600); err != nil {
		return fail(err)
	}
	return initResult{
		Name:           p.Name,
		DataDir:        dir,
		ConfigFile:     cfgPath,
		ClientAddr:     p.Client,
		FederationAddr: p.Federation,
		MetricsAddr:    p.Metrics,
		HealthAddr:     p.Health,
		CAFile:         filepath.Join(dir, "ca.crt"),
		AdminSocket:    filepath.Join(dir, cfg.Listen.AdminSocket),
		AdminCert:      filepath.Join(dir, "admin.crt"),
		AdminKey:       filepath.Join(dir, "admin.key"),
		StorageDriver:  driver,
	}, nil
}
