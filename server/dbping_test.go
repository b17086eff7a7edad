package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/valise-im/valise/storage"
)

// flakyDB answers each Ping with the next of its results; each call
// reports on pinged, then waits for proceed.
type flakyDB struct {
	storage.Store
	mu      sync.Mutex
	results []error
	pinged  chan struct{}
	proceed chan struct{}
}

func (f *flakyDB) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if len(f.results) > 0 {
		err, f.results = f.results[0], f.results[1:]
	}
	f.pinged <- struct{}{}
	<-f.proceed
	return err
}

// TestPinger checks valise_storage_up, the ping histogram and
// Config.DatabaseUp through an outage, and that the outage is logged once
// when it starts and once when it ends, not at every failed ping.
func TestPinger(t *testing.T) {
	down := errors.New("connection refused")
	db := &flakyDB{results: []error{nil, down, down, down, nil, nil}, pinged: make(chan struct{}), proceed: make(chan struct{})}
	var logs bytes.Buffer
	var logMu sync.Mutex
	reg := prometheus.NewRegistry()
	var ups []bool // what DatabaseUp was told; read after the pinger stopped
	n := &Node{store: db, metrics: NewMetrics(reg), log: slog.New(slog.NewTextHandler(&lockedWriter{&logMu, &logs}, nil)),
		cfg: Config{DatabaseUp: func(up bool) { ups = append(ups, up) }}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); n.runPinger(ctx, time.Millisecond) }()
	// While ping i+1 waits, ping i is recorded and nothing else runs.
	wantUp := []float64{1, 0, 0, 0, 1}
	<-db.pinged
	db.proceed <- struct{}{}
	for i, want := range wantUp {
		<-db.pinged
		if got := scraped(t, reg, "valise_storage_up"); got != fmt.Sprint(want) {
			t.Errorf("after ping %d: valise_storage_up = %s, want %v", i+1, got, want)
		}
		if i == len(wantUp)-1 {
			cancel()
		}
		db.proceed <- struct{}{}
	}
	<-done
	// The sixth ping ends with the node stopping and is not recorded.
	if want := []bool{true, false, false, false, true}; !slices.Equal(ups, want) {
		t.Errorf("DatabaseUp was told %v, want %v", ups, want)
	}
	if got := scraped(t, reg, "valise_storage_ping_seconds_count"); got != "2" {
		t.Errorf("valise_storage_ping_seconds_count = %s, want the 2 answered pings", got)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if got := strings.Count(logs.String(), "database not answering"); got != 1 {
		t.Errorf("%d \"database not answering\" lines, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "database answering again"); got != 1 {
		t.Errorf("%d \"database answering again\" lines, want 1:\n%s", got, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// scraped returns the value of the unlabelled series name, as reg's
// /metrics handler writes it.
func scraped(t *testing.T, reg *prometheus.Registry, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in:\n%s", name, rec.Body.String())
	return ""
}
