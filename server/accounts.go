package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// LoginResult is what a successful login returns.
type LoginResult struct {
	User   valise.UserID
	Device valise.DeviceID
	Token  Token
}

// Login checks a password and creates a device. remote names the client's
// address for rate limiting. An unknown user and a wrong password get the
// same error after about the same work.
func (n *Node) Login(ctx context.Context, user, password, displayName, remote string) (LoginResult, error) {
	u, err := valise.ParseUserID(user, n.cfg.Node)
	if err != nil {
		return LoginResult{}, err
	}
	if password == "" || len(password) > MaxPasswordLen {
		return LoginResult{}, valise.Errorf(valise.KindInvalid, "password must be 1 to %d bytes", MaxPasswordLen)
	}
	if err := valise.ValidateDisplayName(displayName); err != nil {
		return LoginResult{}, err
	}
	account := u.String()
	if ok, d := n.loginAddr.Allow(remote); !ok {
		return LoginResult{}, valise.Exhausted(d, "too many login attempts from this address")
	}
	if ok, d := n.loginAccount.Allow(account); !ok {
		return LoginResult{}, valise.Exhausted(d, "too many login attempts for this account")
	}
	if ok, d := n.loginFailure.Peek(account); !ok {
		return LoginResult{}, valise.Exhausted(d, "too many failed logins for this account")
	}
	wrong := valise.Errorf(valise.KindUnauthenticated, "wrong user or password")
	var rec storage.User
	if u.Node == n.cfg.Node {
		rec, err = n.store.GetUser(ctx, u.Localpart)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return LoginResult{}, fmt.Errorf("login: %w", err)
		}
	}
	hash := rec.PasswordHash
	if hash == "" {
		hash = n.dummyHash
	}
	var ok bool
	var cerr error
	if err := n.hash(ctx, func() { ok, cerr = CheckPassword(hash, password) }); err != nil {
		return LoginResult{}, err
	}
	if cerr != nil {
		return LoginResult{}, fmt.Errorf("login: stored hash of %s: %w", u, cerr)
	}
	if !ok || rec.PasswordHash == "" {
		n.loginFailure.Allow(account)
		return LoginResult{}, wrong
	}
	if !rec.Active {
		return LoginResult{}, valise.Errorf(valise.KindPermission, "user %s is deactivated", u)
	}
	token, tokenHash := newToken()
	dev := storage.Device{User: u.Localpart, ID: valise.NewDeviceID(), DisplayName: displayName, CreatedAt: n.now().UTC()}
	if err := n.store.CreateDevice(ctx, dev, tokenHash); err != nil {
		if errors.Is(err, storage.ErrPrecondition) {
			return LoginResult{}, valise.Errorf(valise.KindPermission, "user %s is deactivated", u)
		}
		return LoginResult{}, fmt.Errorf("login: create device: %w", err)
	}
	n.log.InfoContext(ctx, "device logged in", "user", u.String(), "device", dev.ID)
	return LoginResult{User: u, Device: dev.ID, Token: token}, nil
}

// Caller is an authenticated device.
type Caller struct {
	User   string // localpart
	Device valise.DeviceID
}

// Authenticate resolves a bearer token to its device.
func (n *Node) Authenticate(ctx context.Context, token string) (Caller, error) {
	if token == "" {
		return Caller{}, valise.Errorf(valise.KindUnauthenticated, "missing access token")
	}
	h, err := parseToken(token)
	if err != nil {
		return Caller{}, err
	}
	d, err := n.store.Authenticate(ctx, h)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return Caller{}, valise.Errorf(valise.KindUnauthenticated, "unknown or revoked access token")
	case errors.Is(err, storage.ErrPrecondition):
		return Caller{}, valise.Errorf(valise.KindPermission, "user is deactivated")
	case err != nil:
		return Caller{}, fmt.Errorf("authenticate: %w", err)
	}
	return Caller{User: d.User, Device: d.ID}, nil
}

// ListDevices lists a user's devices after the given id.
func (n *Node) ListDevices(ctx context.Context, user string, after valise.DeviceID, limit int) ([]storage.Device, error) {
	return n.store.ListDevices(ctx, user, after, limit)
}

// DeleteDevice revokes a device; audit, if not nil, is recorded with it.
func (n *Node) DeleteDevice(ctx context.Context, user string, id valise.DeviceID, audit *storage.AuditRecord) error {
	if err := n.store.DeleteDevice(ctx, user, id, audit); err != nil {
		return notFound(err, "device %s of %s not found", id, n.userID(user))
	}
	n.hub.revoke(user, id)
	n.log.InfoContext(ctx, "device revoked", "user", n.userID(user).String(), "device", id)
	return nil
}
