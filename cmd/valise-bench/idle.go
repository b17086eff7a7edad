package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// fdsPerDevice is the open files an SDK device that follows its inbox
// holds in valise-bench: its TLS connection, its state directory's lock
// and its receive lock. fdSpare is for everything else.
const (
	fdsPerDevice = 3
	fdSpare      = 256
)

// idlePings is how many of the idle devices get one envelope at the end,
// proving their streams are live.
const idlePings = 100

// runIdle connects --devices devices that each follow their inbox, then
// reads the node's RSS (from /proc) and its heap and goroutines (from its
// metrics) against what they were before the devices logged in.
func (b *bench) runIdle(ctx context.Context, res *result, n *node) error {
	res.Devices, res.OpenFileLimit = b.idleDevices, b.nofile
	if need := uint64(fdsPerDevice*b.idleDevices + fdSpare); b.nofile > 0 && b.nofile < need {
		return fmt.Errorf("%d devices need about %d open files in valise-bench (a TLS connection and two lock files each), "+
			"and the node one connection each; the open file limit is %d and could not be raised (raise the hard limit, "+
			"ulimit -Hn, or run with CAP_SYS_RESOURCE)", b.idleDevices, need, b.nofile)
	}
	sender, err := b.makeDevices(ctx, []*node{n}, "s", 1)
	if err != nil {
		return err
	}
	before, err := b.sample(n)
	if err != nil {
		return err
	}
	devs, err := b.makeDevices(ctx, []*node{n}, "i", b.idleDevices)
	if err != nil {
		return err
	}
	tr := newTracker()
	recv := b.receive(ctx, devs, tr)
	defer recv.stop()
	// Wait until the node holds every stream (its gauge counts them), or
	// a settling time when it has no metrics.
	start := time.Now()
	stop := b.progressf(func() string {
		open, _ := scrape(n.metrics, "valise_inbox_streams_open")
		return fmt.Sprintf("idle %5.1fs  streams open %.0f/%d", time.Since(start).Seconds(), open, b.idleDevices)
	})
	if n.metrics != "" {
		for ctx.Err() == nil && time.Since(start) < b.drain {
			open, err := scrape(n.metrics, "valise_inbox_streams_open")
			if err == nil && int(open) >= b.idleDevices {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	stop()
	time.Sleep(2 * time.Second) // let allocations settle
	after, err := b.sample(n)
	if err != nil {
		return err
	}
	if n.metrics != "" {
		if open, _ := scrape(n.metrics, "valise_inbox_streams_open"); int(open) < b.idleDevices {
			return fmt.Errorf("only %.0f of %d inbox streams open on the node after %v", open, b.idleDevices, b.drain)
		}
	}
	d := float64(b.idleDevices)
	res.RSSBeforeKiB, res.RSSAfterKiB = before.rss, after.rss
	if before.rss > 0 {
		res.RSSPerDeviceKiB = float64(after.rss-before.rss) / d
	}
	res.HeapPerDeviceKiB = (after.heap - before.heap) / 1024 / d
	res.GoroutinesPerDevice = (after.goroutines - before.goroutines) / d

	// One envelope to some of the devices: their streams are live.
	pings := min(idlePings, len(devs))
	res.Senders, res.Receivers = 1, pings
	rt := func(_ int, k uint64) []int { return []int{int(k % uint64(pings))} }
	pstart := time.Now()
	saved := b.rate
	b.rate = 0
	b.sendLoop(ctx, tr, sender, devs[:pings], rt, int64(pings), true)
	b.rate = saved
	sendEnd := time.Now()
	b.waitDelivered(ctx, tr, []*node{n})
	res.fill(tr, pstart, sendEnd)
	return ctx.Err()
}

// nodeSample is what runIdle reads of a node.
type nodeSample struct {
	rss              int64 // KiB
	heap, goroutines float64
}

// sample reads n's RSS (when its pid is known) and, from its metrics
// (when known), its heap in use and goroutines.
func (b *bench) sample(n *node) (nodeSample, error) {
	var s nodeSample
	if n.pid > 0 {
		var err error
		if s.rss, err = rssKiB(n.pid); err != nil {
			return s, err
		}
	}
	if n.metrics != "" {
		var err error
		if s.heap, err = scrape(n.metrics, "go_memstats_heap_inuse_bytes"); err != nil {
			return s, err
		}
		if s.goroutines, err = scrape(n.metrics, "go_goroutines"); err != nil {
			return s, err
		}
	}
	return s, nil
}

// scrape returns the sum of the samples of metric name at the node's
// metrics listener addr.
func scrape(addr, name string) (float64, error) {
	if addr == "" {
		return 0, fmt.Errorf("no metrics address")
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("the node's metrics have no %s", name)
	}
	return sum, nil
}
