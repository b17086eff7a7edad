package main

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// startFake serves a fake AdminService on DIR/admin.sock and returns it
// with DIR, for --data.
func startFake(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	dir := t.TempDir()
	lis, err := net.Listen("unix", filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAdmin()
	srv := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(srv, f)
	serveInBackground(t, srv, lis)
	return f, dir
}

func serveInBackground(t *testing.T, srv *grpc.Server, lis net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		// Serve reports ErrServerStopped when Stop came before it started.
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	})
}

// runCLI runs valisectl with --data dir and the given stdin.
func runCLI(t *testing.T, dir, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), append([]string{"--data", dir}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs valisectl and fails the test unless it exits 0.
func mustRun(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, dir, stdin, args...)
	if code != 0 {
		t.Fatalf("valisectl %q: exit %d, stderr %q", args, code, errOut)
	}
	return out
}

// userColumn returns the first column of a table, header dropped.
func userColumn(table string) string {
	var col []string
	for i, line := range strings.Split(strings.TrimSpace(table), "\n") {
		if i > 0 {
			col = append(col, strings.Fields(line)[0])
		}
	}
	return strings.Join(col, " ")
}
