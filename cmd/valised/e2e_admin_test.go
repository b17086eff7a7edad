package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// TestAdminLifecycle drives every AdminService RPC over the unix socket and
// checks the audit log they leave.
func TestAdminLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		ctx := t.Context()
		a := n.admin
		fi, err := os.Stat(n.ready.AdminSocket)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("admin socket mode = %v, %v; want 0600", fi.Mode(), err)
		}
		for _, u := range []string{"carol", "alice", "bob@localhost"} {
			n.createUser(t, u, u+"-password")
		}
		_, err = a.CreateUser(ctx, &adminv1.CreateUserRequest{User: "alice", Password: "another-password"})
		wantCode(t, err, codes.AlreadyExists)
		_, err = a.CreateUser(ctx, &adminv1.CreateUserRequest{User: "dave@other.example", Password: "dave-password"})
		wantCode(t, err, codes.InvalidArgument)
		_, err = a.CreateUser(ctx, &adminv1.CreateUserRequest{User: "dave", Password: "short"})
		wantCode(t, err, codes.InvalidArgument)
		_, err = a.GetUser(ctx, &adminv1.GetUserRequest{User: "nobody"})
		wantCode(t, err, codes.NotFound)

		page1, err := a.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: 2})
		if err != nil || len(page1.Users) != 2 || page1.Users[0].User != "alice@localhost" || page1.NextPageToken == "" {
			t.Fatalf("users page 1 = %v, %v", page1, err)
		}
		page2, err := a.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: 2, PageToken: page1.NextPageToken})
		if err != nil || len(page2.Users) != 1 || page2.Users[0].User != "carol@localhost" {
			t.Fatalf("users page 2 = %v, %v", page2, err)
		}

		alice := n.login(t, "alice", "alice-password")
		n.login(t, "alice", "alice-password")
		got, err := a.GetUser(ctx, &adminv1.GetUserRequest{User: "alice"})
		if err != nil || got.DeviceCount != 2 || !got.User.Active {
			t.Fatalf("get alice = %v, %v", got, err)
		}
		devs, err := a.ListUserDevices(ctx, &adminv1.ListUserDevicesRequest{User: "alice"})
		if err != nil || len(devs.Devices) != 2 {
			t.Fatalf("alice's devices = %v, %v", devs, err)
		}
		_, err = a.ListUserDevices(ctx, &adminv1.ListUserDevicesRequest{User: "nobody"})
		wantCode(t, err, codes.NotFound)

		// Revoking a device ends its token.
		if _, err := a.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{User: "alice", DeviceId: alice.id}); err != nil {
			t.Fatal(err)
		}
		_, err = alice.c.ListDevices(alice.ctx(ctx), &clientv1.ListDevicesRequest{})
		wantCode(t, err, codes.Unauthenticated)
		_, err = a.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{User: "alice", DeviceId: alice.id})
		wantCode(t, err, codes.NotFound)

		// Deactivation revokes every device and blocks login; reactivation
		// lets the user log in again.
		if _, err := a.DeactivateUser(ctx, &adminv1.DeactivateUserRequest{User: "alice"}); err != nil {
			t.Fatal(err)
		}
		got, _ = a.GetUser(ctx, &adminv1.GetUserRequest{User: "alice"})
		if got.User.Active || got.DeviceCount != 0 {
			t.Fatalf("after deactivation: %v", got)
		}
		_, err = n.client(t).Login(ctx, &clientv1.LoginRequest{User: "alice", Password: "alice-password"})
		wantCode(t, err, codes.PermissionDenied)
		if _, err := a.ReactivateUser(ctx, &adminv1.ReactivateUserRequest{User: "alice"}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.ResetPassword(ctx, &adminv1.ResetPasswordRequest{User: "alice", Password: "new-alice-password"}); err != nil {
			t.Fatal(err)
		}
		_, err = n.client(t).Login(ctx, &clientv1.LoginRequest{User: "alice", Password: "alice-password"})
		wantCode(t, err, codes.Unauthenticated)
		n.login(t, "alice", "new-alice-password")
		_, err = a.DeactivateUser(ctx, &adminv1.DeactivateUserRequest{User: "nobody"})
		wantCode(t, err, codes.NotFound)

		// The audit log records every admin action, in order, hash-chained.
		var events []*adminv1.AuditEvent
		tok := ""
		for {
			res, err := a.ListAuditEvents(ctx, &adminv1.ListAuditEventsRequest{PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			if !res.ChainVerified {
				t.Fatalf("audit chain does not verify at page %q", tok)
			}
			events = append(events, res.Events...)
			if tok = res.NextPageToken; tok == "" {
				break
			}
		}
		var actions []string
		for i, e := range events {
			if e.Seq != int64(i+1) || !strings.HasPrefix(e.Actor, "unix:uid=") || len(e.Hash) != 32 {
				t.Fatalf("event %d = %v", i, e)
			}
			actions = append(actions, e.Action+" "+e.Target)
		}
		want := []string{
			"user.create carol@localhost", "user.create alice@localhost", "user.create bob@localhost",
			"device.revoke alice@localhost", "user.deactivate alice@localhost", "user.reactivate alice@localhost",
			"user.reset_password alice@localhost",
		}
		if strings.Join(actions, "\n") != strings.Join(want, "\n") {
			t.Fatalf("audit actions:\n%s\nwant:\n%s", strings.Join(actions, "\n"), strings.Join(want, "\n"))
		}
		// No password reaches the logs.
		for _, secret := range []string{"alice-password", "new-alice-password", alice.token} {
			if strings.Contains(n.logs.String(), secret) {
				t.Fatalf("the logs contain a secret")
			}
		}
	})
}

// TestRemoteAdmin serves the AdminService over mTLS and checks that only an
// admin certificate of the node's CA gets in.
func TestRemoteAdmin(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	n := startNodeIn(t, dir, testConfig(t, dir, func(c *config.Config) { c.Listen.AdminRemote = "127.0.0.1:0" }))
	dial := func(certFile, keyFile string) adminv1.AdminServiceClient {
		cfg := n.tlsConfig()
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		conn, err := grpc.NewClient(n.ready.AdminRemote, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return adminv1.NewAdminServiceClient(conn)
	}
	if _, err := dial("admin.crt", "admin.key").CreateUser(t.Context(), &adminv1.CreateUserRequest{User: "alice", Password: "alice-password"}); err != nil {
		t.Fatalf("admin certificate refused: %v", err)
	}
	ev, err := n.admin.ListAuditEvents(t.Context(), &adminv1.ListAuditEventsRequest{})
	if err != nil || len(ev.Events) != 1 || ev.Events[0].Actor != "cert:admin@localhost" {
		t.Fatalf("audit = %v, %v; want one event by cert:admin@localhost", ev, err)
	}
	// The node's own certificate is from the right CA but not an admin's.
	_, err = dial("node.crt", "node.key").ListUsers(t.Context(), &adminv1.ListUsersRequest{})
	wantCode(t, err, codes.Unavailable)
	_, err = dial("", "").ListUsers(t.Context(), &adminv1.ListUsersRequest{})
	wantCode(t, err, codes.Unavailable)
}
