package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// backupFake answers BackupDatabase with parts, then err.
type backupFake struct {
	adminv1.UnimplementedAdminServiceServer
	parts []*adminv1.BackupDatabaseResponse
	err   error
}

func (f *backupFake) BackupDatabase(_ *adminv1.BackupDatabaseRequest, s adminv1.AdminService_BackupDatabaseServer) error {
	for _, p := range f.parts {
		if err := s.Send(p); err != nil {
			return err
		}
	}
	return f.err
}

func startBackupFake(t *testing.T, f *backupFake) string {
	t.Helper()
	dir := t.TempDir()
	lis, err := net.Listen("unix", filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(srv, f)
	serveInBackground(t, srv, lis)
	return dir
}

func chunk(s string) *adminv1.BackupDatabaseResponse {
	return &adminv1.BackupDatabaseResponse{Part: &adminv1.BackupDatabaseResponse_Chunk{Chunk: []byte(s)}}
}

func summary(size int64, data string) *adminv1.BackupDatabaseResponse {
	sum := sha256.Sum256([]byte(data))
	return &adminv1.BackupDatabaseResponse{Part: &adminv1.BackupDatabaseResponse_Summary{Summary: &adminv1.BackupSummary{SizeBytes: size, Sha256: sum[:], SchemaVersion: 4}}}
}

func TestBackupWritesVerifiedFile(t *testing.T) {
	dir := startBackupFake(t, &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("hello, "), chunk("world"), summary(12, "hello, world")}})
	out := filepath.Join(t.TempDir(), "b.db")
	stdout := mustRun(t, dir, "", "backup", "--out", out)
	sum := sha256.Sum256([]byte("hello, world"))
	if want := "backup written to " + out + ": 12 bytes, sha256 " + hex.EncodeToString(sum[:]) + ", schema version 4\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != "hello, world" {
		t.Errorf("file = %q, %v", got, err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestBackupDiscardsBadStreams(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fake  *backupFake
		wants string
	}{
		{"no summary", &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("hello")}}, "without its summary"},
		{"short", &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("hell"), summary(5, "hello")}}, "received 4 bytes, the node sent 5"},
		{"altered", &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("jello"), summary(5, "hello")}}, "SHA-256"},
		{"data after the summary", &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("hello"), summary(5, "hello"), chunk("!")}}, "after the summary"},
		{"empty part", &backupFake{parts: []*adminv1.BackupDatabaseResponse{{}}}, "empty part"},
		{"broken mid-stream", &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("hel")}, err: status.Error(codes.Unavailable, "shutting down")}, "shutting down"},
		{"refused", &backupFake{err: status.Error(codes.FailedPrecondition, "back it up with pg_dump -Fc")}, "back it up with pg_dump -Fc (FailedPrecondition)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := startBackupFake(t, tc.fake)
			outDir := t.TempDir()
			code, _, stderr := runCLI(t, dir, "", "backup", "--out", filepath.Join(outDir, "b.db"))
			if code != 1 || !strings.Contains(stderr, tc.wants) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.wants)
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

func TestBackupExistingFile(t *testing.T) {
	dir := startBackupFake(t, &backupFake{parts: []*adminv1.BackupDatabaseResponse{chunk("new"), summary(3, "new")}})
	out := filepath.Join(t.TempDir(), "b.db")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, dir, "", "backup", "--out", out)
	if code != 1 || !strings.Contains(stderr, "exists; pass --force") {
		t.Errorf("exit %d, %q; want 1 and a hint at --force", code, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("the refused backup wrote %q", b)
	}
	mustRun(t, dir, "", "backup", "--out", out, "--force")
	if b, _ := os.ReadFile(out); string(b) != "new" {
		t.Errorf("backup --force left %q", b)
	}
	if code, _, stderr := runCLI(t, dir, "", "backup"); code != 2 || !strings.Contains(stderr, "--out FILE is required") {
		t.Errorf("backup without --out: exit %d, %q; want 2", code, stderr)
	}
}
