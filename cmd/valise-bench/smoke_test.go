package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/valise-im/valise/internal/testbin"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// binaries builds valised and valise-bench side by side (so valise-bench
// finds valised beside itself) and returns valise-bench's path.
func binaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("the smoke test builds and runs valised and valise-bench; skipped with -short")
	}
	testbin.Path(t, "valised")
	return testbin.Path(t, "valise-bench")
}

// TestSmoke runs every scenario briefly, with tiny parameters, on SQLite
// and, when VALISE_TEST_POSTGRES is set, on PostgreSQL (failing, never
// skipping, when that server cannot be reached), and checks the counts
// in the JSON: every envelope accepted was delivered once. It checks no
// speed.
func TestSmoke(t *testing.T) {
	bin := binaries(t)
	backends := []string{"sqlite"}
	if os.Getenv(pgtest.EnvVar) != "" {
		backends = append(backends, "postgres")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			args := []string{"all", "--json", "--progress", "0", "--backend", backend,
				"--duration", "500ms", "--senders", "2", "--receivers", "2", "--concurrency", "2",
				"--group", "3", "--nodes", "2", "--queued", "40", "--devices", "12", "--drain", "30s"}
			if backend == "postgres" {
				args = append(args, "--postgres", os.Getenv(pgtest.EnvVar))
			}
			cmd := exec.CommandContext(t.Context(), bin, args...)
			cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "VALISE_") })
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil {
				t.Errorf("valise-bench %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
			}
			var got []string
			dec := json.NewDecoder(&stdout)
			for dec.More() {
				var r result
				if err := dec.Decode(&r); err != nil {
					t.Fatalf("decoding the JSON output: %v", err)
				}
				got = append(got, r.Scenario)
				if r.Backend != backend {
					t.Errorf("%s: backend %q, want %q", r.Scenario, r.Backend, backend)
				}
				if r.Sent == 0 || r.Sent != r.Delivered || r.Lost != 0 || r.Duplicated != 0 || r.Unexpected != 0 || r.Errors != 0 || !r.OK {
					t.Errorf("%s: sent %d, delivered %d, lost %d, duplicated %d, unexpected %d, errors %d, ok %v; want everything sent delivered once",
						r.Scenario, r.Sent, r.Delivered, r.Lost, r.Duplicated, r.Unexpected, r.Errors, r.OK)
				}
				if r.Measured == 0 || r.Measured > r.Delivered {
					t.Errorf("%s: %d measured of %d delivered", r.Scenario, r.Measured, r.Delivered)
				}
				if r.Scenario == "idle" && (r.Devices != 12 || r.RSSAfterKiB <= 0) {
					t.Errorf("idle: %d devices, node RSS %d KiB; want 12 devices and the RSS read", r.Devices, r.RSSAfterKiB)
				}
				if r.Scenario == "fanout" && (r.Nodes != 2 || r.Receivers != 3) {
					t.Errorf("fanout over %d nodes to %d devices, want 2 and 3", r.Nodes, r.Receivers)
				}
			}
			if !slices.Equal(got, scenarios) {
				t.Errorf("scenarios in the output: %q, want %q", got, scenarios)
			}
		})
	}
}
