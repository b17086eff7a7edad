package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRenderedDefaults proves that a freshly rendered config file decodes
// strictly to exactly the defaults.
func TestRenderedDefaults(t *testing.T) {
	d := Default()
	b, err := Render(FileParams{Name: "node.example", Client: d.Listen.Client, Federation: d.Listen.Federation, Metrics: d.Listen.Metrics, Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	got := Default()
	if err := Decode(b, &got); err != nil {
		t.Fatalf("decode rendered config: %v", err)
	}
	want := Default()
	want.Node.Name = "node.example"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rendered config differs from defaults (-want +got):\n%s", diff)
	}
}

// TestExampleMatchesDefaults checks deploy/valised.example.yaml against the
// defaults: it must decode strictly, and every value but the node's name
// must be the default.
func TestExampleMatchesDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "valised.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := Default()
	if err := Decode(b, &got); err != nil {
		t.Fatalf("decode example: %v", err)
	}
	want := Default()
	want.Node.Name = got.Node.Name
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deploy/valised.example.yaml differs from the defaults (-want +got):\n%s", diff)
	}
	// The example is what init writes, comments included (below its own
	// header).
	rendered, err := Render(FileParams{Name: "ministry-a.example", Client: "127.0.0.1:7443", Federation: "127.0.0.1:7444", Metrics: "127.0.0.1:9464", Driver: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	if _, body, ok := strings.Cut(string(b), "\n\n"); !ok || body != string(rendered) {
		t.Errorf("deploy/valised.example.yaml is not the rendered template below its header; regenerate it")
	}
	// Every key of the rendered file appears in the example.
	r, _ := Render(FileParams{Name: "x", Driver: "sqlite"})
	for _, line := range strings.Split(string(r), "\n") {
		key, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || strings.HasPrefix(key, "#") || key == "" {
			continue
		}
		if !strings.Contains(string(b), key+":") {
			t.Errorf("example lacks key %q", key)
		}
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	c := Default()
	if err := Decode([]byte("listen:\n  clinet: 1.2.3.4:5\n"), &c); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Node.Name = "Bad_Name"
	c.Listen.Client = "nonsense"
	c.Storage.Driver = "mysql"
	c.Limits.MaxRecipients = 0
	c.GRPC.UnaryTimeout = 0
	c.Limits.IdempotencyRetention = Duration(-time.Hour)
	c.Log.Level = "loud"
	err := c.Validate(t.TempDir(), false)
	p, ok := err.(Problems)
	if !ok {
		t.Fatalf("Validate = %v, want Problems", err)
	}
	for _, path := range []string{"node.name", "listen.client", "storage.driver", "limits.max_recipients", "grpc.unary_timeout", "limits.idempotency_retention", "log.level"} {
		found := false
		for _, line := range p {
			if strings.HasPrefix(line, path+":") {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem reported for %s; got:\n%s", path, p)
		}
	}
	c = Default()
	c.Node.Name = "ok.example"
	if err := c.Validate(t.TempDir(), false); err != nil {
		t.Errorf("defaults with a name: %v", err)
	}
}

func TestDurationsAreStrings(t *testing.T) {
	c := Default()
	if err := Decode([]byte("grpc:\n  unary_timeout: 10\n"), &c); err == nil {
		t.Error("a bare number was accepted as a duration")
	}
	if err := Decode([]byte("grpc:\n  unary_timeout: 3s\n"), &c); err != nil || c.GRPC.UnaryTimeout.D().Seconds() != 3 {
		t.Errorf("3s: %v %v", err, c.GRPC.UnaryTimeout)
	}
}

// TestHealthAddr checks listen.health: off by default, set by
// VALISE_HEALTH_ADDR, and validated as HOST:PORT.
func TestHealthAddr(t *testing.T) {
	c := Default()
	if c.Listen.Health != "" {
		t.Errorf("default listen.health = %q, want off", c.Listen.Health)
	}
	c.applyEnv(func(k string) string {
		if k == "VALISE_HEALTH_ADDR" {
			return "0.0.0.0:7445"
		}
		return ""
	})
	if c.Listen.Health != "0.0.0.0:7445" {
		t.Errorf("listen.health after VALISE_HEALTH_ADDR = %q, want 0.0.0.0:7445", c.Listen.Health)
	}
	c.Node.Name = "ok.example"
	if err := c.Validate(t.TempDir(), false); err != nil {
		t.Errorf("a valid health address: %v", err)
	}
	c.Listen.Health = "7445"
	err := c.Validate(t.TempDir(), false)
	if err == nil || !strings.Contains(err.Error(), "listen.health:") {
		t.Errorf("listen.health 7445: %v, want a listen.health problem", err)
	}
}

// TestRenderedListenValues checks that what `valised init` writes for a
// listener decodes back to exactly that value: "" turns the listener off
// (a bare empty value would decode as null and keep the default), and an
// IPv6 address is not read as a YAML list.
func TestRenderedListenValues(t *testing.T) {
	for _, v := range []string{"", "127.0.0.1:7444", "[::1]:7444", "[::]:7444", "node.example:7444", "0.0.0.0:0"} {
		t.Run(v, func(t *testing.T) {
			b, err := Render(FileParams{Name: "node.example", Client: v, Federation: v, Metrics: v, Health: v, Driver: "sqlite"})
			if err != nil {
				t.Fatal(err)
			}
			got := Default()
			if err := Decode(b, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			l := got.Listen
			if l.Client != v || l.Federation != v || l.Metrics != v || l.Health != v {
				t.Errorf("listen = client %q, federation %q, metrics %q, health %q; want %q for each", l.Client, l.Federation, l.Metrics, l.Health, v)
			}
		})
	}
}
