package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/pki"
)

// The monitoring files in deploy/ that TestMonitoringFilesUseExportedMetrics
// checks against a real node.
var (
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "valise-dashboard.json")
	alertsFile    = filepath.Join("..", "..", "deploy", "prometheus", "valise-alerts.yml")
)

// promqlWords are PromQL's keywords and aggregation operators: words in an
// expression that are not metric names.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true,
	"limit_ratio": true,
}

// promqlLabelLists are the words followed by a parenthesized list of
// label names.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlMetricNames returns the metric names a PromQL expression selects,
// in order of appearance: identifiers that are not functions (followed by
// "("), keywords, label names (inside {} or after by/on/...), strings,
// numbers, durations or Grafana variables ($name).
func promqlMetricNames(expr string) []string {
	var names []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	// skipTo returns the index after the close matching the open at i,
	// skipping quoted strings.
	var skipString func(i int) int
	skipTo := func(i int, open, close byte) int {
		depth := 0
		for i < len(expr) {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(i)
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	skipString = func(i int) int {
		q := expr[i]
		for i++; i < len(expr); i++ {
			if expr[i] == '\\' && q != '`' {
				i++
				continue
			}
			if expr[i] == q {
				return i + 1
			}
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$' || '0' <= c && c <= '9' || c == '.':
			// A Grafana variable, a number or a duration.
			for i++; i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.'); i++ {
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			switch {
			case promqlLabelLists[strings.ToLower(word)]:
				if next < len(expr) && expr[next] == '(' {
					j = skipTo(next, '(', ')')
				}
			case next < len(expr) && expr[next] == '(':
				// A function call.
			case promqlWords[strings.ToLower(word)]:
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

// grafanaQueryMetricNames is promqlMetricNames for a Grafana variable
// query: label_values(SELECTOR, LABEL) selects SELECTOR's metric.
func grafanaQueryMetricNames(q string) []string {
	q = strings.TrimSpace(q)
	if inner, ok := strings.CutPrefix(q, "label_values("); ok {
		inner = strings.TrimSuffix(inner, ")")
		if k := strings.LastIndexByte(inner, ','); k >= 0 {
			return promqlMetricNames(inner[:k])
		}
		return nil // label_values(LABEL): no metric
	}
	return promqlMetricNames(q)
}

func TestPromQLMetricNames(t *testing.T) {
	for _, c := range []struct {
		name, expr string
		want       []string
	}{
		{"selector", `valise_inbox_depth{job=~"$job",instance=~"$instance"}`, []string{"valise_inbox_depth"}},
		{"aggregation with by", `sum by (peer, outcome) (rate(valise_x_total{peer="a"}[5m]))`, []string{"valise_x_total"}},
		{"quantile", `histogram_quantile(0.99, sum by (job, le) (rate(b_bucket[$__rate_interval]))) > 0.5 or up == 0`, []string{"b_bucket", "up"}},
		{"time arithmetic", `(m1 - time()) / 86400 < 14 * 86400 and m1 - time() > 0`, []string{"m1", "m1"}},
		{"unless on", "max by (job, peer) (a) > 0\n  unless on (job, peer)\n(sum by (job,peer) (increase(b{outcome=\"ok\"}[30m])) > 0)", []string{"a", "b"}},
		{"strings with braces", `rate(x{code=~"Internal|Un}known",m='a"b'}[5m])`, []string{"x"}},
		{"offset and group_left", `a offset 5m * on (x) group_left (y) b`, []string{"a", "b"}},
		{"aggregation after the argument", `sum(rate(c[1m])) without (instance)`, []string{"c"}},
		{"scientific number", `d > 1e6`, []string{"d"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := promqlMetricNames(c.expr); !slices.Equal(got, c.want) {
				t.Errorf("promqlMetricNames(%q) = %q, want %q", c.expr, got, c.want)
			}
		})
	}
	if got, want := grafanaQueryMetricNames(`label_values(valise_storage_up{job=~"$job"}, instance)`), []string{"valise_storage_up"}; !slices.Equal(got, want) {
		t.Errorf("label_values query: got %q, want %q", got, want)
	}
	if got := grafanaQueryMetricNames(`label_values(job)`); len(got) != 0 {
		t.Errorf("label_values(job) selects %q, want nothing", got)
	}
}

// exported scrapes n's /metrics and returns the names of the series it
// exports (histograms as NAME_bucket, NAME_sum, NAME_count) and the
// families (NAME).
func exported(t *testing.T, n *testNode) (series, families map[string]bool) {
	t.Helper()
	resp, err := http.Get("http://" + n.ready.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	series, families = map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			families[strings.Fields(f)[0]] = true
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		series[line[:strings.IndexAny(line, "{ ")]] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series, families
}

// dashboardQueries returns every PromQL expression of a Grafana dashboard:
// the panels' targets and the query variables, keyed by where they are.
func dashboardQueries(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr       string          `json:"expr"`
				Datasource json.RawMessage `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not a valid dashboard: %v", dashboardFile, err)
	}
	if dec.More() {
		t.Fatalf("%s has data after its JSON object", dashboardFile)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: both are required", d.Title, d.UID)
	}
	q := map[string][]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || len(tg.Datasource) == 0 {
				t.Errorf("panel %q has a target without an expression or data source", p.Title)
			}
			q["panel "+p.Title] = append(q["panel "+p.Title], tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var s struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &s); err != nil {
			if err := json.Unmarshal(v.Query, &s.Query); err != nil {
				t.Fatalf("variable %s: query is neither a string nor an object: %v", v.Name, err)
			}
		}
		q["variable "+v.Name] = append(q["variable "+v.Name], "label_values-query:"+s.Query)
	}
	return q
}

// alertQueries returns the expression of every rule of a Prometheus rule
// file, keyed by alert name.
func alertQueries(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	q := map[string][]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			q["alert "+r.Alert] = append(q["alert "+r.Alert], r.Expr)
		}
	}
	if len(q) == 0 {
		t.Fatalf("%s holds no alert", alertsFile)
	}
	return q
}

// TestMonitoringFilesUseExportedMetrics checks that every metric the
// Grafana dashboard and the alert rules in deploy/ query is one a real node
// exports, and that the dashboard shows every valise_ metric. The metrics
// are scraped from two federating nodes after traffic that makes every
// labelled series appear: a delivered envelope, a dead letter, and
// envelopes queued for a peer that never answers.
func TestMonitoringFilesUseExportedMetrics(t *testing.T) {
	a := startFedNode(t, "sqlite", "a.example", nil)
	b := startFedNode(t, "sqlite", "b.example", nil)
	peerAll(t, a, b)
	cDir := newNamedNodeDir(t, "sqlite", "c.example") // never started
	addPeer(t, a, cDir, "127.0.0.1:1")
	a.createUser(t, "alice", "alice-password")
	b.createUser(t, "bob", "bob-password")
	alice := a.login(t, "alice", "alice-password")
	bob := b.login(t, "bob", "bob-password")
	bobStream := inboxStream(t, bob, 0)
	send(t, alice, "k1", []*device{bob}, []byte("hello"))
	recvN(t, bobStream, 1)
	send(t, alice, "k2", []*device{{user: "bob@b.example", id: string(valise.NewDeviceID())}}, []byte("to nobody"))
	send(t, alice, "k3", []*device{{user: "carol@c.example", id: string(valise.NewDeviceID())}}, []byte("queued"))
	eventually(t, 30*time.Second, "a dead letter, a queue for c.example and a failed transaction to it", func() bool {
		return a.metric(t, "valise_federation_dead_letters_total") >= 1 &&
			a.metric(t, "valise_federation_outbox_depth", `peer="c.example"`) >= 1 &&
			a.metric(t, "valise_federation_transactions_total", `peer="c.example"`) >= 1
	})

	series, families := exported(t, a)
	bSeries, bFamilies := exported(t, b)
	for k := range bSeries {
		series[k] = true
	}
	for k := range bFamilies {
		families[k] = true
	}
	// up is the series Prometheus itself records for every scrape.
	series["up"] = true
	// The new metrics must be among them, or the check proves little.
	for _, m := range []string{"valise_certificate_expiry_timestamp_seconds", "valise_storage_up", "valise_storage_ping_seconds_bucket",
		"valise_storage_commit_failures_total", "valise_federation_dead_letters_total", "valise_federation_inbound_envelopes_total"} {
		if !series[m] {
			t.Errorf("the nodes do not export %s", m)
		}
	}
	if got := a.metric(t, "valise_certificate_expiry_timestamp_seconds", `kind="`+pki.KindPeerCA+`"`); got == 0 {
		t.Error("a exports no peer CA expiry")
	}

	check := func(file string, queries map[string][]string) map[string]bool {
		used := map[string]bool{}
		for where, exprs := range queries {
			for _, e := range exprs {
				var names []string
				if q, ok := strings.CutPrefix(e, "label_values-query:"); ok {
					names = grafanaQueryMetricNames(q)
				} else {
					names = promqlMetricNames(e)
					if len(names) == 0 {
						t.Errorf("%s: %s: %q selects no metric", file, where, e)
					}
				}
				for _, n := range names {
					used[n] = true
					if !series[n] {
						t.Errorf("%s: %s queries %s, which the node does not export", file, where, n)
					}
				}
			}
		}
		return used
	}
	dash, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	used := check(dashboardFile, dashboardQueries(t, dash))
	rules, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	check(alertsFile, alertQueries(t, rules))

	for f := range families {
		if !strings.HasPrefix(f, "valise_") {
			continue
		}
		if !used[f] && !used[f+"_bucket"] && !used[f+"_sum"] && !used[f+"_count"] {
			t.Errorf("%s: no panel shows %s", dashboardFile, f)
		}
	}
}
