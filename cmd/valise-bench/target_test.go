package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTargetOpenLoop runs local in open loop (--rate) against a node
// that is already running (--target), started here as a valised process
// the way the tool starts its own, and checks the counts.
func TestTargetOpenLoop(t *testing.T) {
	bin := binaries(t)
	dir, err := os.MkdirTemp("", "vbt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n, err := startNode(t.Context(), filepath.Join(filepath.Dir(bin), "valised"), filepath.Join(dir, "node"), "target.valise-bench.test", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.stop() })
	target := fmt.Sprintf("client=%s,ca=%s,admin=%s,name=%s,pid=%d,metrics=%s",
		n.client, filepath.Join(n.dir, "ca.crt"), n.adminSock, n.name, n.pid, n.metrics)
	cmd := exec.CommandContext(t.Context(), bin, "local", "--json", "--progress", "0", "--target", target,
		"--rate", "100", "--duration", "1s", "--senders", "2", "--receivers", "2", "--concurrency", "4")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("valise-bench: %v\n%s", err, stderr.String())
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("output %q: %v", stdout.String(), err)
	}
	if r.Sent == 0 || r.Sent != r.Delivered || r.Lost != 0 || r.Duplicated != 0 || r.Errors != 0 || !r.OK {
		t.Errorf("sent %d, delivered %d, lost %d, duplicated %d, errors %d; want everything delivered once", r.Sent, r.Delivered, r.Lost, r.Duplicated, r.Errors)
	}
	if r.RateTarget != 100 || r.Nodes != 1 {
		t.Errorf("rate_target %v, nodes %d; want 100 and 1", r.RateTarget, r.Nodes)
	}
	// The node kept running: the tool stops only nodes it started.
	if err := n.alive(); err != nil {
		t.Errorf("the targeted node: %v", err)
	}
}
