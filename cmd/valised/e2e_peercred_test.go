package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// adminSocketEnv carries the admin socket path to TestAdminSocketHelper.
const adminSocketEnv = "VALISE_TEST_ADMIN_SOCKET_HELPER"

// nobody is the uid and gid the helper runs as.
const nobody = 65534

// TestAdminSocketRefusesOtherUsers opens the admin socket's file and
// directories to everybody, so that only the server's SO_PEERCRED check
// stands, and checks that another user's process is refused while root
// (the node's own user here) gets through.
func TestAdminSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running a process as another user needs root")
	}
	n := startNode(t, "sqlite", nil)
	sock := n.ready.AdminSocket
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode = %v, want a socket with 0600", fi.Mode())
	}

	// The data directory and its parent (from os.MkdirTemp) are 0700.
	for _, d := range []string{filepath.Dir(n.dir), n.dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}

	// The test binary may sit in a directory nobody cannot enter: run a
	// world-readable copy.
	binDir, err := os.MkdirTemp("", "vpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "valised.test")
	copyFile(t, os.Args[0], bin, 0o755)

	helper := func(cred *syscall.Credential) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^TestAdminSocketHelper$", "-test.v", "-test.count=1")
		cmd.Dir = binDir
		cmd.Env = append(childEnv(), adminSocketEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("helper (%+v): %v\nstdout:\n%s\nstderr:\n%s", cred, err, &out, &errOut)
		}
		return out.String()
	}

	// The control: the helper run as root gets through, so the refusal
	// below is about the uid, not about the helper.
	if out := helper(nil); !strings.Contains(out, "uid=0 connect=ok code=OK\n") {
		t.Fatalf("helper as root printed:\n%s\nwant uid=0 connect=ok code=OK", out)
	}
	// nobody can connect to the socket (the file modes let it) but the
	// server's handshake closes the connection, so the call fails.
	out := helper(&syscall.Credential{Uid: nobody, Gid: nobody})
	t.Logf("helper as nobody:\n%s", out)
	want := fmt.Sprintf("uid=%d connect=ok closed=true code=Unavailable\n", nobody)
	if !strings.Contains(out, want) {
		t.Fatalf("helper as nobody printed:\n%s\nwant %q", out, want)
	}

	// The node's own user (this process) still administers it.
	if _, err := n.admin.ListUsers(t.Context(), &adminv1.ListUsersRequest{}); err != nil {
		t.Fatalf("ListUsers from the test process: %v", err)
	}
}

// TestAdminSocketHelper is run by TestAdminSocketRefusesOtherUsers in a
// child process, possibly as another user; it skips otherwise. It prints
// "uid=U connect=ok [closed=B ]code=C": whether a raw connection to the
// socket opens and, for a refused uid, is closed by the server, and the
// gRPC code of ListUsers over it.
func TestAdminSocketHelper(t *testing.T) {
	sock := os.Getenv(adminSocketEnv)
	if sock == "" {
		t.Skip("run by TestAdminSocketRefusesOtherUsers")
	}
	report := fmt.Sprintf("uid=%d", os.Getuid())
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		fmt.Printf("%s connect=%v\n", report, err)
		return
	}
	report += " connect=ok"
	if os.Getuid() != 0 {
		// A refused handshake closes the connection without a byte.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		report += fmt.Sprintf(" closed=%v", err == io.EOF)
	}
	c.Close()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = adminv1.NewAdminServiceClient(conn).ListUsers(ctx, &adminv1.ListUsersRequest{})
	fmt.Printf("%s code=%v\n", report, status.Code(err))
	if err != nil {
		fmt.Printf("error: %v\n", err)
	}
}

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}
