package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// scenarios are the scenario names, in the order "all" runs them.
var scenarios = []string{"local", "federated", "fanout", "offline", "idle"}

// bench is one invocation of the tool.
type bench struct {
	scenario         string
	backend          string
	postgres         string
	valised          string
	targets          []string
	senders          int
	receivers        int
	concurrency      int
	rate             float64
	duration         time.Duration
	count            int
	size             int
	group            int
	nodes            int
	queued           int
	idleDevices      int
	drain            time.Duration
	warmup           bool
	asJSON           bool
	progress         time.Duration
	work             string
	keep             bool
	oneTimeKeys      int
	directoryTTL     time.Duration
	loginConcurrency int
	cpuProfile       string

	stdout, stderr io.Writer
	run            string
	devices        []*dev
	nofile         uint64
	warnMu         sync.Mutex
	warnings       int
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole tool: 0 when every envelope was delivered exactly
// once, 1 when not (or on a failure), 2 on bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	b := &bench{stdout: stdout, stderr: stderr}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	b.scenario = args[0]
	if b.scenario != "all" && !slices.Contains(scenarios, b.scenario) {
		fmt.Fprintf(stderr, "valise-bench: unknown scenario %q (want %s or all)\n", b.scenario, strings.Join(scenarios, ", "))
		return 2
	}
	fs := flag.NewFlagSet("valise-bench "+b.scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var targets stringList
	fs.StringVar(&b.backend, "backend", "sqlite", "storage of the nodes the tool starts: sqlite or postgres")
	fs.StringVar(&b.postgres, "postgres", "", "PostgreSQL DSN (a role that may create databases) for --backend postgres")
	fs.StringVar(&b.valised, "valised", "", "the valised binary (default: beside valise-bench, else on PATH)")
	fs.Var(&targets, "target", "a running node instead of starting one: client=HOST:PORT,ca=FILE,admin=SOCKET,name=NODE[,pid=PID][,metrics=HOST:PORT] (repeat for several nodes)")
	fs.IntVar(&b.senders, "senders", 4, "sending devices (local, federated, offline)")
	fs.IntVar(&b.receivers, "receivers", 4, "receiving devices (local, federated)")
	fs.IntVar(&b.concurrency, "concurrency", 16, "sends in flight at once (closed loop), or the senders' worker pool with --rate")
	fs.Float64Var(&b.rate, "rate", 0, "open loop: envelopes per second to send; 0 is closed loop")
	fs.DurationVar(&b.duration, "duration", 10*time.Second, "how long to send (local, federated, fanout)")
	fs.IntVar(&b.count, "count", 0, "stop sending after this many envelopes (0: only --duration)")
	fs.IntVar(&b.size, "size", 1024, "message body bytes sealed in each envelope (at least 23)")
	fs.IntVar(&b.group, "group", 8, "fanout: devices in the group")
	fs.IntVar(&b.nodes, "nodes", 3, "fanout: nodes the group is spread over")
	fs.IntVar(&b.queued, "queued", 10000, "offline: envelopes queued for the offline device")
	fs.IntVar(&b.idleDevices, "devices", 1000, "idle: connected, streaming devices")
	fs.DurationVar(&b.drain, "drain", time.Minute, "how long to wait for the last envelopes after sending stops")
	fs.BoolVar(&b.warmup, "warmup", true, "send one unmeasured envelope on every sender-receiver pair first")
	fs.BoolVar(&b.asJSON, "json", false, "print one JSON object per scenario on stdout instead of the table")
	fs.DurationVar(&b.progress, "progress", 2*time.Second, "interval of the progress line on stderr; 0 turns it off")
	fs.StringVar(&b.work, "workdir", "", "directory for node data and device state (default: a new temporary directory, removed at the end)")
	fs.BoolVar(&b.keep, "keep", false, "keep the work directory (node logs, data, device state)")
	fs.IntVar(&b.oneTimeKeys, "one-time-keys", 10, "one-time prekeys each device keeps published (client Config.OneTimeKeyTarget)")
	fs.DurationVar(&b.directoryTTL, "directory-ttl", time.Minute, "how long a sender reuses a user's key directory (client Config.DirectoryTTL); 0 asks the node on every send")
	fs.IntVar(&b.loginConcurrency, "login-concurrency", 16, "devices created at once")
	fs.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator (valise-bench itself) to this file")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	b.targets = targets
	if err := b.validate(fs); err != nil {
		fmt.Fprintf(stderr, "valise-bench: %v\n", err)
		return 2
	}
	var err error
	if b.nofile, err = raiseNoFile(); err != nil {
		b.warnf("raising the open file limit: %v", err)
	}
	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "valise-bench: --cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "valise-bench: --cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	list := []string{b.scenario}
	if b.scenario == "all" {
		list = scenarios
	}
	var results []*result
	code := 0
	for _, s := range list {
		res, err := b.runScenario(ctx, s)
		if err != nil {
			fmt.Fprintf(stderr, "valise-bench: %s: %v\n", s, err)
			code = 1
			if res == nil {
				break
			}
		}
		results = append(results, res)
		if !res.OK {
			code = 1
		}
		if b.asJSON {
			json.NewEncoder(stdout).Encode(res)
		}
	}
	if !b.asJSON {
		printTable(stdout, results)
	}
	return code
}

// validate checks the flags together.
func (b *bench) validate(fs *flag.FlagSet) error {
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q (flags come after the scenario)", fs.Args()))
	}
	switch b.backend {
	case "sqlite":
		if b.postgres != "" {
			errs = append(errs, errors.New("--postgres needs --backend postgres"))
		}
	case "postgres":
		if b.postgres == "" && len(b.targets) == 0 {
			errs = append(errs, errors.New("--backend postgres needs --postgres DSN"))
		}
	default:
		errs = append(errs, fmt.Errorf("--backend %q: want sqlite or postgres", b.backend))
	}
	positive := map[string]int{"--senders": b.senders, "--receivers": b.receivers, "--concurrency": b.concurrency,
		"--group": b.group, "--nodes": b.nodes, "--queued": b.queued, "--devices": b.idleDevices,
		"--one-time-keys": b.oneTimeKeys, "--login-concurrency": b.loginConcurrency}
	for _, name := range slices.Sorted(maps.Keys(positive)) {
		if positive[name] < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1", name))
		}
	}
	if b.oneTimeKeys > 500 {
		errs = append(errs, errors.New("--one-time-keys must be at most 500 (the node's limit)"))
	}
	if b.rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	if b.count < 0 {
		errs = append(errs, errors.New("--count must not be negative"))
	}
	if b.duration <= 0 && b.count == 0 {
		errs = append(errs, errors.New("--duration must be positive (or give --count)"))
	}
	if b.size < payloadHeader || b.size > 190_000 {
		errs = append(errs, fmt.Errorf("--size must be between %d and 190000 bytes", payloadHeader))
	}
	if b.drain <= 0 {
		errs = append(errs, errors.New("--drain must be positive"))
	}
	if b.directoryTTL < 0 {
		errs = append(errs, errors.New("--directory-ttl must not be negative"))
	}
	for _, t := range b.targets {
		if _, err := parseTargetSyntax(t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// progressf prints line() on stderr every --progress until the returned
// function is called.
func (b *bench) progressf(line func() string) func() {
	if b.progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.progress)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintln(b.stderr, line())
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// warnf reports a problem on stderr; past 20, only the count is kept.
func (b *bench) warnf(format string, args ...any) {
	b.warnMu.Lock()
	defer b.warnMu.Unlock()
	b.warnings++
	if b.warnings <= 20 {
		fmt.Fprintf(b.stderr, "valise-bench: "+format+"\n", args...)
	} else if b.warnings == 21 {
		fmt.Fprintln(b.stderr, "valise-bench: more warnings follow; not shown")
	}
}

// setup prepares a scenario: the work directory and the nodes (started
// or targeted). The returned cleanup stops what was started and closes
// the devices.
func (b *bench) setup(ctx context.Context, scenario string, want int) (nodes []*node, cleanup func() error, err error) {
	b.run = runID()
	b.devices = nil
	work := b.work
	removeWork := false
	if work == "" {
		// Unix socket paths are short: keep it near the root.
		if work, err = os.MkdirTemp("", "vb"); err != nil {
			return nil, nil, err
		}
		removeWork = !b.keep
	} else {
		work = filepath.Join(work, b.run)
	}
	b.work = work
	cleanup = func() error {
		var errs []error
		for _, d := range b.devices {
			if d != nil {
				d.c.Close()
			}
		}
		for _, n := range nodes {
			if err := n.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if removeWork {
			os.RemoveAll(work)
		} else {
			fmt.Fprintf(b.stderr, "valise-bench: %s: work directory kept: %s\n", scenario, work)
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if len(b.targets) > 0 {
		if len(b.targets) < want {
			return nil, cleanup, fmt.Errorf("%s needs %d nodes; %d --target given", scenario, want, len(b.targets))
		}
		for _, t := range b.targets[:want] {
			n, err := parseTarget(t)
			if err != nil {
				return nil, cleanup, err
			}
			nodes = append(nodes, n)
		}
		return nodes, cleanup, nil
	}
	bin, err := findValised(b.valised)
	if err != nil {
		return nil, cleanup, err
	}
	pg := ""
	if b.backend == "postgres" {
		pg = b.postgres
	}
	for i := range want {
		n, err := startNode(ctx, bin, filepath.Join(work, fmt.Sprintf("n%d", i+1)), nodeName(i), pg)
		if n != nil && n.cmd != nil {
			nodes = append(nodes, n)
		}
		if err != nil {
			return nil, cleanup, err
		}
	}
	if want > 1 {
		if err := peerAll(ctx, nodes); err != nil {
			return nil, cleanup, err
		}
	}
	return nodes, cleanup, nil
}

// runScenario runs one scenario in a fresh setup.
func (b *bench) runScenario(ctx context.Context, scenario string) (*result, error) {
	want := 1
	switch scenario {
	case "federated":
		want = 2
	case "fanout":
		want = b.nodes
	}
	workFlag := b.work
	defer func() { b.work = workFlag }()
	nodes, cleanup, err := b.setup(ctx, scenario, want)
	if err != nil {
		return nil, err
	}
	res := &result{Scenario: scenario, Backend: b.backend, Nodes: len(nodes), SizeBytes: b.size}
	switch scenario {
	case "local":
		err = b.runLoad(ctx, res, nodes[:1], nodes[:1], b.senders, b.receivers)
	case "federated":
		err = b.runLoad(ctx, res, nodes[:1], nodes[1:2], b.senders, b.receivers)
	case "fanout":
		err = b.runLoad(ctx, res, nodes[:1], nodes, 1, b.group)
	case "offline":
		err = b.runOffline(ctx, res, nodes[0])
	case "idle":
		err = b.runIdle(ctx, res, nodes[0])
	}
	for _, n := range nodes {
		if aerr := n.alive(); aerr != nil && err == nil {
			err = aerr
		}
	}
	if cerr := cleanup(); cerr != nil && err == nil {
		err = cerr
	}
	res.OK = err == nil && res.Lost == 0 && res.Duplicated == 0 && res.Unexpected == 0 && res.Errors == 0 && res.Sent == res.Delivered
	return res, err
}

// printTable prints the results as a table.
func printTable(w io.Writer, results []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tbackend\tnodes\tsent\tdelivered\tlost\tdup\terrors\trate/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tdevices\tRSS/device KiB\tok\t")
	for _, r := range results {
		dev, rss := "-", "-"
		if r.Scenario == "idle" {
			dev, rss = fmt.Sprint(r.Devices), fmt.Sprintf("%.1f", r.RSSPerDeviceKiB)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%v\t\n",
			r.Scenario, r.Backend, r.Nodes, r.Sent, r.Delivered, r.Lost, r.Duplicated, r.Errors,
			r.RatePerSec, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, dev, rss, r.OK)
	}
	tw.Flush()
}
