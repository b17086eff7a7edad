package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// TestBadInput sends every kind of bad input over the wire and checks the
// status code and that nothing changed.
func TestBadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, func(c *config.Config) {
			c.Limits.MaxCiphertextBytes = 1024
			c.Limits.MaxRecipients = 3
			c.Limits.MaxOneTimeKeysPerUpload = 5
			c.Limits.MaxOneTimeKeysStored = 6
		})
		n.createUser(t, "alice", "alice-password")
		n.createUser(t, "bob", "bob-password")
		n.createUser(t, "carol", "carol-password")
		alice := n.login(t, "alice", "alice-password")
		bob := n.login(t, "bob", "bob-password")
		carol := n.login(t, "carol", "carol-password")
		publishKeys(t, bob, 1, 2)
		if _, err := n.admin.DeactivateUser(t.Context(), &adminv1.DeactivateUserRequest{User: "carol"}); err != nil {
			t.Fatal(err)
		}
		env := func(user, dev string, size int) *clientv1.OutgoingEnvelope {
			return &clientv1.OutgoingEnvelope{RecipientUser: user, RecipientDeviceId: dev, Ciphertext: bytes.Repeat([]byte{7}, size)}
		}
		good := env("bob", bob.id, 10)
		sends := []struct {
			name string
			req  *clientv1.SendEnvelopesRequest
			want codes.Code
		}{
			{"no idempotency key", &clientv1.SendEnvelopesRequest{Envelopes: []*clientv1.OutgoingEnvelope{good}}, codes.InvalidArgument},
			{"long idempotency key", &clientv1.SendEnvelopesRequest{IdempotencyKey: strings.Repeat("k", 129), Envelopes: []*clientv1.OutgoingEnvelope{good}}, codes.InvalidArgument},
			{"no envelopes", &clientv1.SendEnvelopesRequest{IdempotencyKey: "a"}, codes.InvalidArgument},
			{"too many recipients", &clientv1.SendEnvelopesRequest{IdempotencyKey: "b", Envelopes: []*clientv1.OutgoingEnvelope{good, good, good, good}}, codes.InvalidArgument},
			{"ciphertext too large", &clientv1.SendEnvelopesRequest{IdempotencyKey: "c", Envelopes: []*clientv1.OutgoingEnvelope{good, env("bob", bob.id, 1025)}}, codes.InvalidArgument},
			{"empty ciphertext", &clientv1.SendEnvelopesRequest{IdempotencyKey: "d", Envelopes: []*clientv1.OutgoingEnvelope{env("bob", bob.id, 0)}}, codes.InvalidArgument},
			{"malformed user", &clientv1.SendEnvelopesRequest{IdempotencyKey: "e", Envelopes: []*clientv1.OutgoingEnvelope{good, env("Bob!", bob.id, 10)}}, codes.InvalidArgument},
			{"malformed device", &clientv1.SendEnvelopesRequest{IdempotencyKey: "f", Envelopes: []*clientv1.OutgoingEnvelope{good, env("bob", "nope", 10)}}, codes.InvalidArgument},
			{"unknown user", &clientv1.SendEnvelopesRequest{IdempotencyKey: "g", Envelopes: []*clientv1.OutgoingEnvelope{good, env("zed", bob.id, 10)}}, codes.NotFound},
			{"unknown device", &clientv1.SendEnvelopesRequest{IdempotencyKey: "h", Envelopes: []*clientv1.OutgoingEnvelope{good, env("bob", "DVAAAAAAAAAAAAAAAA", 10)}}, codes.NotFound},
			{"node that is not a peer", &clientv1.SendEnvelopesRequest{IdempotencyKey: "i", Envelopes: []*clientv1.OutgoingEnvelope{good, env("bob@elsewhere.example", bob.id, 10)}}, codes.PermissionDenied},
			{"deactivated recipient", &clientv1.SendEnvelopesRequest{IdempotencyKey: "j", Envelopes: []*clientv1.OutgoingEnvelope{good, env("carol", carol.id, 10)}}, codes.PermissionDenied},
		}
		for _, tc := range sends {
			t.Run("send/"+tc.name, func(t *testing.T) {
				_, err := alice.c.SendEnvelopes(alice.ctx(t.Context()), tc.req)
				wantCode(t, err, tc.want)
			})
		}
		// Nothing of the refused sends reached bob.
		if _, err := alice.c.SendEnvelopes(alice.ctx(t.Context()), &clientv1.SendEnvelopesRequest{IdempotencyKey: "marker", Envelopes: []*clientv1.OutgoingEnvelope{env("bob", bob.id, 3)}}); err != nil {
			t.Fatal(err)
		}
		first := recvN(t, inboxStream(t, bob, 0), 1)[0]
		if first.Cursor != 1 || len(first.Ciphertext) != 3 {
			t.Fatalf("bob's first envelope is cursor %d of %d bytes; a refused send leaked into his inbox", first.Cursor, len(first.Ciphertext))
		}

		keyReq := func(ik []byte, spk *clientv1.PreKey, otks int, firstID uint32) *clientv1.PublishDeviceKeysRequest {
			r := &clientv1.PublishDeviceKeysRequest{IdentityKey: ik, SignedPrekey: spk}
			for i := range otks {
				r.OneTimePrekeys = append(r.OneTimePrekeys, &clientv1.PreKey{KeyId: firstID + uint32(i), PublicKey: []byte("k"), Signature: []byte("s")})
			}
			return r
		}
		spk := &clientv1.PreKey{KeyId: 1, PublicKey: []byte("p"), Signature: []byte("s")}
		idk := []byte("identity-" + bob.id)
		keys := []struct {
			name string
			dev  *device
			req  *clientv1.PublishDeviceKeysRequest
			want codes.Code
		}{
			{"first publish without identity", alice, keyReq(nil, spk, 1, 1), codes.InvalidArgument},
			{"identity key too long", alice, keyReq(bytes.Repeat([]byte{1}, 2049), spk, 0, 1), codes.InvalidArgument},
			{"empty signed prekey", alice, keyReq([]byte("id"), &clientv1.PreKey{KeyId: 1}, 0, 1), codes.InvalidArgument},
			{"signature too long", alice, keyReq([]byte("id"), &clientv1.PreKey{KeyId: 1, PublicKey: []byte("p"), Signature: bytes.Repeat([]byte{1}, 257)}, 0, 1), codes.InvalidArgument},
			{"too many one-time keys per upload", bob, keyReq(idk, nil, 6, 100), codes.InvalidArgument},
			{"duplicate key id in upload", bob, &clientv1.PublishDeviceKeysRequest{OneTimePrekeys: []*clientv1.PreKey{{KeyId: 9, PublicKey: []byte("a"), Signature: []byte("s")}, {KeyId: 9, PublicKey: []byte("b"), Signature: []byte("s")}}}, codes.InvalidArgument},
			{"identity key change", bob, keyReq([]byte("another identity"), nil, 0, 1), codes.AlreadyExists},
			{"reused one-time key id", bob, keyReq(nil, nil, 1, 1), codes.AlreadyExists},
			{"stock over maximum", bob, keyReq(nil, nil, 5, 300), codes.FailedPrecondition},
		}
		for _, tc := range keys {
			t.Run("keys/"+tc.name, func(t *testing.T) {
				_, err := tc.dev.c.PublishDeviceKeys(tc.dev.ctx(t.Context()), tc.req)
				wantCode(t, err, tc.want)
			})
		}
		cnt, err := bob.c.CountOneTimeKeys(bob.ctx(t.Context()), &clientv1.CountOneTimeKeysRequest{})
		if err != nil || cnt.OneTimeKeyCount != 2 {
			t.Fatalf("bob's stock after refused publishes = %v, %v; want 2", cnt, err)
		}

		other := []struct {
			name string
			call func(ctx context.Context) error
			want codes.Code
		}{
			{"claim malformed device", func(ctx context.Context) error {
				_, err := alice.c.ClaimOneTimeKey(alice.ctx(ctx), &clientv1.ClaimOneTimeKeyRequest{User: "bob", DeviceId: "x"})
				return err
			}, codes.InvalidArgument},
			{"claim unknown device", func(ctx context.Context) error {
				_, err := alice.c.ClaimOneTimeKey(alice.ctx(ctx), &clientv1.ClaimOneTimeKeyRequest{User: "bob", DeviceId: "DVAAAAAAAAAAAAAAAA"})
				return err
			}, codes.NotFound},
			{"claim device without keys", func(ctx context.Context) error {
				_, err := bob.c.ClaimOneTimeKey(bob.ctx(ctx), &clientv1.ClaimOneTimeKeyRequest{User: "alice", DeviceId: alice.id})
				return err
			}, codes.NotFound},
			{"keys of malformed user", func(ctx context.Context) error {
				_, err := alice.c.GetDeviceKeys(alice.ctx(ctx), &clientv1.GetDeviceKeysRequest{User: "@@"})
				return err
			}, codes.InvalidArgument},
			{"delete malformed device", func(ctx context.Context) error {
				_, err := alice.c.DeleteDevice(alice.ctx(ctx), &clientv1.DeleteDeviceRequest{DeviceId: "bad"})
				return err
			}, codes.InvalidArgument},
			{"delete another user's device", func(ctx context.Context) error {
				_, err := alice.c.DeleteDevice(alice.ctx(ctx), &clientv1.DeleteDeviceRequest{DeviceId: bob.id})
				return err
			}, codes.NotFound},
			{"ack cursor 0", func(ctx context.Context) error {
				_, err := alice.c.AckInbox(alice.ctx(ctx), &clientv1.AckInboxRequest{})
				return err
			}, codes.InvalidArgument},
			{"negative page size", func(ctx context.Context) error {
				_, err := alice.c.ListDevices(alice.ctx(ctx), &clientv1.ListDevicesRequest{PageSize: -1})
				return err
			}, codes.InvalidArgument},
			{"malformed page token", func(ctx context.Context) error {
				_, err := alice.c.ListDevices(alice.ctx(ctx), &clientv1.ListDevicesRequest{PageToken: "!!"})
				return err
			}, codes.InvalidArgument},
			{"no token", func(ctx context.Context) error {
				_, err := alice.c.ListDevices(ctx, &clientv1.ListDevicesRequest{})
				return err
			}, codes.Unauthenticated},
			{"malformed token", func(ctx context.Context) error {
				_, err := alice.c.ListDevices(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer nope"), &clientv1.ListDevicesRequest{})
				return err
			}, codes.InvalidArgument},
			{"unknown token", func(ctx context.Context) error {
				fake := "vt_" + strings.Repeat("A", 43)
				_, err := alice.c.ListDevices(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+fake), &clientv1.ListDevicesRequest{})
				return err
			}, codes.Unauthenticated},
			{"deactivated user's token", func(ctx context.Context) error {
				_, err := carol.c.ListDevices(carol.ctx(ctx), &clientv1.ListDevicesRequest{})
				return err
			}, codes.Unauthenticated},
			{"login deactivated", func(ctx context.Context) error {
				_, err := alice.c.Login(ctx, &clientv1.LoginRequest{User: "carol", Password: "carol-password"})
				return err
			}, codes.PermissionDenied},
			{"login malformed user", func(ctx context.Context) error {
				_, err := alice.c.Login(ctx, &clientv1.LoginRequest{User: "Carol", Password: "x"})
				return err
			}, codes.InvalidArgument},
			{"login empty password", func(ctx context.Context) error {
				_, err := alice.c.Login(ctx, &clientv1.LoginRequest{User: "carol"})
				return err
			}, codes.InvalidArgument},
			{"login display name too long", func(ctx context.Context) error {
				_, err := alice.c.Login(ctx, &clientv1.LoginRequest{User: "alice", Password: "alice-password", DeviceDisplayName: strings.Repeat("d", 129)})
				return err
			}, codes.InvalidArgument},
			{"request over the message size", func(ctx context.Context) error {
				big := &clientv1.SendEnvelopesRequest{IdempotencyKey: "big"}
				for range 3 {
					big.Envelopes = append(big.Envelopes, env("bob", bob.id, 400<<10))
				}
				_, err := alice.c.SendEnvelopes(alice.ctx(ctx), big)
				return err
			}, codes.ResourceExhausted},
		}
		for _, tc := range other {
			t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(t.Context()), tc.want) })
		}
	})
}

// TestWrongPasswordLooksLikeUnknownUser checks that a wrong password and an
// unknown user get the same status and message.
func TestWrongPasswordLooksLikeUnknownUser(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	n.createUser(t, "alice", "alice-password")
	c := n.client(t)
	_, errWrong := c.Login(t.Context(), &clientv1.LoginRequest{User: "alice", Password: "wrong-password"})
	_, errUnknown := c.Login(t.Context(), &clientv1.LoginRequest{User: "nobody", Password: "wrong-password"})
	sw, su := status.Convert(errWrong), status.Convert(errUnknown)
	if sw.Code() != codes.Unauthenticated || sw.Code() != su.Code() || sw.Message() != su.Message() {
		t.Fatalf("wrong password: %v; unknown user: %v; want the same Unauthenticated answer", errWrong, errUnknown)
	}
}

// TestRateLimits checks that logins and sends past their bucket get
// ResourceExhausted with a retry delay, and change nothing.
func TestRateLimits(t *testing.T) {
	n := startNode(t, "sqlite", func(c *config.Config) {
		c.Limits.Login = config.Rate{Burst: 4, PerSecond: 0.001}
		c.Limits.LoginFailure = config.Rate{Burst: 2, PerSecond: 0.001}
		c.Limits.Send = config.Rate{Burst: 2, PerSecond: 0.001}
		c.Limits.Claim = config.Rate{Burst: 1, PerSecond: 0.001}
	})
	n.createUser(t, "alice", "alice-password")
	n.createUser(t, "bob", "bob-password")
	c := n.client(t)
	for range 2 {
		_, err := c.Login(t.Context(), &clientv1.LoginRequest{User: "bob", Password: "bad"})
		wantCode(t, err, codes.Unauthenticated)
	}
	// bob's failure bucket is empty: even the right password waits.
	_, err := c.Login(t.Context(), &clientv1.LoginRequest{User: "bob", Password: "bob-password"})
	wantRetry(t, err)
	alice := n.login(t, "alice", "alice-password")
	// The address bucket (4) is used up now.
	_, err = c.Login(t.Context(), &clientv1.LoginRequest{User: "alice", Password: "alice-password"})
	wantRetry(t, err)

	env := &clientv1.OutgoingEnvelope{RecipientUser: "alice", RecipientDeviceId: alice.id, Ciphertext: []byte("x")}
	for i := range 2 {
		if _, err := alice.c.SendEnvelopes(alice.ctx(t.Context()), &clientv1.SendEnvelopesRequest{IdempotencyKey: fmt.Sprint(i), Envelopes: []*clientv1.OutgoingEnvelope{env}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = alice.c.SendEnvelopes(alice.ctx(t.Context()), &clientv1.SendEnvelopesRequest{IdempotencyKey: "3", Envelopes: []*clientv1.OutgoingEnvelope{env}})
	wantRetry(t, err)
	got := recvN(t, inboxStream(t, alice, 0), 2)
	expectNothing(t, inboxStream(t, alice, got[1].Cursor))

	publishKeys(t, alice, 1, 3)
	if _, err := alice.c.ClaimOneTimeKey(alice.ctx(t.Context()), &clientv1.ClaimOneTimeKeyRequest{User: "alice", DeviceId: alice.id}); err != nil {
		t.Fatal(err)
	}
	_, err = alice.c.ClaimOneTimeKey(alice.ctx(t.Context()), &clientv1.ClaimOneTimeKeyRequest{User: "alice", DeviceId: alice.id})
	wantRetry(t, err)
	cnt, err := alice.c.CountOneTimeKeys(alice.ctx(t.Context()), &clientv1.CountOneTimeKeysRequest{})
	if err != nil || cnt.OneTimeKeyCount != 2 {
		t.Fatalf("stock after a refused claim = %v, %v; want 2", cnt, err)
	}
}

func wantRetry(t *testing.T, err error) {
	t.Helper()
	wantCode(t, err, codes.ResourceExhausted)
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return
		}
	}
	t.Fatalf("%v carries no RetryInfo", err)
}
