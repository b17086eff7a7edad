package main

import (
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// composeFile is the part of the compose specification that
// deploy/compose/compose.yaml uses; decoding is strict, so a key outside
// it (or a misspelt one) fails the test.
type composeFile struct {
	Name     string                     `yaml:"name"`
	Services map[string]composeService  `yaml:"services"`
	Networks map[string]*composeNetwork `yaml:"networks"`
	Volumes  map[string]*struct{}       `yaml:"volumes"`
}

type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
		Target     string `yaml:"target"`
	} `yaml:"build"`
	Image       string            `yaml:"image"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Networks    map[string]*struct {
		Aliases []string `yaml:"aliases"`
	} `yaml:"networks"`
	NetworkMode string   `yaml:"network_mode"`
	Ports       []string `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		StartPeriod string   `yaml:"start_period"`
		Retries     int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Restart string `yaml:"restart"`
}

type composeNetwork struct {
	Internal bool `yaml:"internal"`
}

// UnmarshalYAML accepts a service's networks as a list or a map.
func (s *composeService) UnmarshalYAML(n *yaml.Node) error {
	type plain composeService
	if nets := mapValue(n, "networks"); nets != nil && nets.Kind == yaml.SequenceNode {
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, item := range nets.Content {
			m.Content = append(m.Content, item, &yaml.Node{Kind: yaml.MappingNode})
		}
		*nets = *m
	}
	var p plain
	if err := decodeStrict(n, &p); err != nil {
		return err
	}
	*s = composeService(p)
	return nil
}

// mapValue returns the value of key in mapping node n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// decodeStrict decodes a node refusing unknown keys.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// composeDir is deploy/compose.
var composeDir = filepath.Join(deployDir, "compose")

// loadCompose decodes deploy/compose/compose.yaml strictly.
func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

// setupDefault returns the default setup.sh gives variable v
// (`v=${v:-default}`).
func setupDefault(t *testing.T, v string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeDir, "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + v + `=\$\{` + v + `:-([^}]*)\}$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("setup.sh gives %s no default", v)
	}
	return string(m[1])
}

// TestComposeFile checks deploy/compose/compose.yaml: two organizations,
// each a node plus PostgreSQL, started after the one-shot setup service
// (setup.sh in the image's setup stage) succeeds; health checks by
// pg_isready and `valised health`; the volumes and names setup.sh uses;
// declared volumes and networks; no secret inline.
func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"postgres-a", "postgres-b", "setup", "valised-a", "valised-b"}; !slices.Equal(names, want) {
		t.Fatalf("services %q, want %q", names, want)
	}
	_, stages := parseContainerfile(t, filepath.Join(deployDir, "container", "Containerfile"))
	hasStage := func(name string) bool {
		return slices.ContainsFunc(stages, func(s stage) bool { return s.name == name })
	}
	// Every build uses the repository's Containerfile.
	for name, s := range c.Services {
		if s.Build == nil {
			continue
		}
		if p := filepath.Join(composeDir, s.Build.Context, s.Build.Dockerfile); filepath.Clean(p) != filepath.Join(deployDir, "container", "Containerfile") {
			t.Errorf("%s builds %s, want deploy/container/Containerfile", name, p)
		}
		if s.Build.Target != "" && !hasStage(s.Build.Target) {
			t.Errorf("%s builds target %q, which the Containerfile lacks", name, s.Build.Target)
		}
	}

	setup := c.Services["setup"]
	if setup.Build == nil || setup.Build.Target != "setup" || setup.Restart != "no" {
		t.Errorf("setup: build target %v, restart %q; want the setup stage, run once", setup.Build, setup.Restart)
	}
	for _, org := range []string{"a", "b"} {
		X := strings.ToUpper(org)
		node, pg := c.Services["valised-"+org], c.Services["postgres-"+org]
		nodeName := setup.Environment[X+"_NAME"]
		if nodeName != setupDefault(t, X+"_NAME") {
			t.Errorf("setup %s_NAME = %q, setup.sh's default %q", X, nodeName, setupDefault(t, X+"_NAME"))
		}
		// The setup service writes the volumes the node and PostgreSQL use.
		for _, v := range []string{"data-" + org + ":" + setupDefault(t, X+"_DATA"), "secrets-" + org + ":" + setupDefault(t, X+"_SECRETS")} {
			if !slices.Contains(setup.Volumes, v) {
				t.Errorf("setup volumes %q lack %s", setup.Volumes, v)
			}
		}
		if !slices.Contains(node.Volumes, "data-"+org+":/var/lib/valise") {
			t.Errorf("valised-%s volumes %q, want data-%s at /var/lib/valise", org, node.Volumes, org)
		}
		if node.DependsOn["setup"].Condition != "service_completed_successfully" || node.DependsOn["postgres-"+org].Condition != "service_healthy" {
			t.Errorf("valised-%s depends_on %v, want setup completed and postgres-%s healthy", org, node.DependsOn, org)
		}
		if pg.DependsOn["setup"].Condition != "service_completed_successfully" {
			t.Errorf("postgres-%s depends_on %v, want setup completed", org, pg.DependsOn)
		}
		// Peers dial X_NAME:7444 (setup.sh's X_FEDERATION), which the
		// federation network's alias and the node's listener provide.
		if fed := node.Networks["federation"]; fed == nil || !slices.Contains(fed.Aliases, nodeName) {
			t.Errorf("valised-%s is not %s on the federation network", org, nodeName)
		}
		if got, want := setupDefault(t, X+"_FEDERATION"), "$"+X+"_NAME:7444"; got != want {
			t.Errorf("setup.sh %s_FEDERATION default %q, want %q", X, got, want)
		}
		if got := setupDefault(t, X+"_FEDERATION_ADDR"); got != "0.0.0.0:7444" {
			t.Errorf("setup.sh %s_FEDERATION_ADDR default %q, want 0.0.0.0:7444", X, got)
		}
		if got, want := setupDefault(t, X+"_POSTGRES"), "postgres-"+org+":5432"; got != want {
			t.Errorf("setup.sh %s_POSTGRES default %q, want %q", X, got, want)
		}
		if node.Networks["org-"+org] == nil || !slices.Equal(pg.NetworkNames(), []string{"org-" + org}) {
			t.Errorf("valised-%s and postgres-%s do not share org-%s alone", org, org, org)
		}
		if hc := node.Healthcheck; hc == nil || !slices.Equal(hc.Test[:5], []string{"CMD", "/usr/local/bin/valised", "health", "--data", "/var/lib/valise"}) {
			t.Errorf("valised-%s healthcheck %v, want valised health --data /var/lib/valise", org, node.Healthcheck)
		}
		if hc := pg.Healthcheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "pg_isready" {
			t.Errorf("postgres-%s healthcheck %v, want pg_isready", org, pg.Healthcheck)
		}
		// PostgreSQL reads the password setup.sh wrote, read-only.
		pwFile := pg.Environment["POSTGRES_PASSWORD_FILE"]
		if !slices.Contains(pg.Volumes, "secrets-"+org+":"+filepath.Dir(pwFile)+":ro") || filepath.Base(pwFile) != "postgres-password" {
			t.Errorf("postgres-%s POSTGRES_PASSWORD_FILE %q is not the setup's password on secrets-%s (volumes %q)", org, pwFile, org, pg.Volumes)
		}
		if pg.Environment["POSTGRES_USER"] != setupDefault(t, "POSTGRES_USER") || pg.Environment["POSTGRES_DB"] != setupDefault(t, X+"_POSTGRES_DB") {
			t.Errorf("postgres-%s user/db %q/%q differ from setup.sh's", org, pg.Environment["POSTGRES_USER"], pg.Environment["POSTGRES_DB"])
		}
		if !c.Networks["org-"+org].Internal {
			t.Errorf("network org-%s is not internal", org)
		}
	}

	// Everything used is declared; nothing secret is inline; published
	// ports stay on loopback.
	dsnWithPassword := regexp.MustCompile(`://[^/@\s]+:[^/@\s]+@`)
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			if vol, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(vol, ".") && !strings.HasPrefix(vol, "/") {
				if _, ok := c.Volumes[vol]; !ok {
					t.Errorf("%s uses undeclared volume %s", name, vol)
				}
			}
		}
		for _, n := range s.NetworkNames() {
			if _, ok := c.Networks[n]; !ok {
				t.Errorf("%s uses undeclared network %s", name, n)
			}
		}
		for k, v := range s.Environment {
			secretKey := regexp.MustCompile(`(?i)password|secret|token|dsn|key`).MatchString(k)
			if (secretKey && !strings.HasSuffix(k, "_FILE")) || dsnWithPassword.MatchString(v) {
				t.Errorf("%s: environment %s holds a secret inline", name, k)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
		}
		if name != "setup" && s.Healthcheck == nil {
			t.Errorf("%s has no healthcheck", name)
		}
	}
}

// NetworkNames returns the service's networks, sorted.
func (s composeService) NetworkNames() []string {
	var names []string
	for n := range s.Networks {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestComposeSetup runs deploy/compose/setup.sh for real, as the compose
// setup service does (with the built valised, data directories in a
// temporary directory, and a PostgreSQL database per organization), runs
// it again (it keeps both nodes), then starts the two nodes as processes,
// creates users with valisectl and sends a message with the valise client
// from one organization to the other, as deploy/compose/README.md does,
// and runs the compose health check.
func TestComposeSetup(t *testing.T) {
	valised := valisedBinary(t)
	ctl := valisectlBinary(t)
	base := t.TempDir()
	env := append(childEnv(), "VALISED="+valised, "PG_UID="+fmt.Sprint(os.Getuid()))
	dirs := map[string]string{}
	for _, org := range []string{"a", "b"} {
		X := strings.ToUpper(org)
		u, err := url.Parse(pgtest.DSN(t))
		if err != nil {
			t.Fatal(err)
		}
		dirs[org] = filepath.Join(base, org)
		env = append(env,
			X+"_DATA="+dirs[org],
			X+"_SECRETS="+filepath.Join(base, "secrets-"+org),
			X+"_POSTGRES="+u.Host,
			X+"_POSTGRES_DB="+strings.TrimPrefix(u.Path, "/"),
			X+"_FEDERATION="+freeAddr(t),
			X+"_CLIENT_ADDR="+freeAddr(t),
			X+"_HEALTH_ADDR="+freeAddr(t),
			X+"_METRICS_ADDR=127.0.0.1:0",
		)
		if u.User != nil {
			env = append(env, "POSTGRES_USER="+u.User.Username())
		}
	}
	// Each node listens for federation where its peer dials it.
	for _, org := range []string{"a", "b"} {
		X := strings.ToUpper(org)
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, X+"_FEDERATION="); ok {
				env = append(env, X+"_FEDERATION_ADDR="+v)
			}
		}
	}
	setup := func() string {
		t.Helper()
		cmd := exec.Command("sh", filepath.Join(composeDir, "setup.sh"))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("setup.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	t.Log(setup())
	before := map[string]map[string]string{"a": treeSnapshot(t, dirs["a"]), "b": treeSnapshot(t, dirs["b"])}
	if out := setup(); !strings.Contains(out, "already holds a node") {
		t.Errorf("a second setup.sh printed %q, want it to keep the nodes", out)
	}
	for org, dir := range dirs {
		if after := treeSnapshot(t, dir); !maps.Equal(before[org], after) {
			t.Errorf("a second setup.sh changed %s", dir)
		}
		cfg, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Storage.Driver != "postgres" || len(cfg.Federation.Peers) != 1 || cfg.Listen.Health == "" {
			t.Errorf("%s: driver %s, peers %v, health %q; want postgres, one peer, a health listener", dir, cfg.Storage.Driver, cfg.Federation.Peers, cfg.Listen.Health)
		}
		if os.Getuid() == 0 {
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: owner %d mode %v, want the image's user 65532 and 0700", dir, st.Uid, fi.Mode().Perm())
			}
		}
	}

	a, b := startProc(t, dirs["a"]), startProc(t, dirs["b"])
	// Users, created as the walkthrough does (valisectl on the admin
	// socket, password on stdin).
	for _, u := range []struct {
		p    *proc
		name string
	}{{a, "alice"}, {b, "bob"}} {
		cmd := exec.Command(ctl, "--data", u.p.dir, "user", "create", u.name, "--password-stdin")
		cmd.Env = childEnv()
		cmd.Stdin = strings.NewReader(u.name + "-password\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("valisectl user create %s: %v\n%s", u.name, err, out)
		}
	}
	// The walkthrough's client steps: log in on each node with the
	// reference client (trusting that node's CA), send from A to B, and
	// receive on B. The client seals end to end across the federation.
	state := t.TempDir()
	for _, u := range []struct {
		p    *proc
		name string
	}{{b, "bob"}, {a, "alice"}} {
		mustValise(t, u.name+"-password\n", "--state", filepath.Join(state, u.name), "login",
			"--server", u.p.clientAddr, "--server-name", u.p.name(t), "--ca", filepath.Join(u.p.dir, "ca.crt"),
			"--user", u.name, "--password-stdin")
	}
	mustValise(t, "", "--state", filepath.Join(state, "alice"), "send", "bob@"+b.name(t), "hello from ministry A")
	var got []cliMessage
	eventually(t, 60*time.Second, "bob receives alice's message", func() bool {
		got = append(got, cliRecv(t, filepath.Join(state, "bob"), "5s")...)
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Text != "hello from ministry A" || got[0].From != "alice@"+a.name(t) {
		t.Errorf("bob received %+v, want alice's one message", got)
	}

	// The compose health check, on each node's data directory.
	hc := loadCompose(t).Services["valised-a"].Healthcheck.Test[1:]
	for _, p := range []*proc{a, b} {
		args := slices.Clone(hc[1:])
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "/var/lib/valise", p.dir)
		}
		eventually(t, 30*time.Second, "compose health check", func() bool {
			cmd := exec.Command(valised, args...)
			cmd.Env = childEnv()
			return cmd.Run() == nil
		})
	}
}

// treeSnapshot returns every regular file under dir (by relative path)
// with its mode and content.
func treeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = fi.Mode().String() + "\n" + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
