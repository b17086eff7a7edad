package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func (n *Node) audit(actor, action, target, detail string) *storage.AuditRecord {
	return &storage.AuditRecord{Time: n.now().UTC(), Actor: actor, Action: action, Target: target, Detail: detail}
}

func checkNewPassword(p string) error {
	if len(p) < MinPasswordLen || len(p) > MaxPasswordLen {
		return valise.Errorf(valise.KindInvalid, "password must be %d to %d bytes", MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// CreateUser creates an active user; actor is recorded in the audit log.
func (n *Node) CreateUser(ctx context.Context, actor, user, password string) (storage.User, error) {
	u, err := valise.ParseUserID(user, n.cfg.Node)
	if err != nil {
		return storage.User{}, err
	}
	if u.Node != n.cfg.Node {
		return storage.User{}, valise.Errorf(valise.KindInvalid, "user %s is not on this node (%s)", u, n.cfg.Node)
	}
	if err := checkNewPassword(password); err != nil {
		return storage.User{}, err
	}
	var hash string
	if err := n.hash(ctx, func() { hash = HashPassword(n.cfg.Password, password) }); err != nil {
		return storage.User{}, err
	}
	now := n.now().UTC()
	rec := storage.User{Localpart: u.Localpart, PasswordHash: hash, Active: true, CreatedAt: now, UpdatedAt: now}
	if err := n.store.CreateUser(ctx, rec, n.audit(actor, "user.create", u.String(), "")); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return storage.User{}, valise.Errorf(valise.KindAlreadyExists, "user %s exists already", u)
		}
		return storage.User{}, fmt.Errorf("create user: %w", err)
	}
	n.log.InfoContext(ctx, "user created", "user", u.String(), "actor", actor)
	return rec, nil
}

// GetUser returns a user and their device count.
func (n *Node) GetUser(ctx context.Context, user string) (storage.User, int, error) {
	local, err := n.adminUser(user)
	if err != nil {
		return storage.User{}, 0, err
	}
	u, err := n.store.GetUser(ctx, local)
	if err != nil {
		return storage.User{}, 0, notFound(err, "user %s not found", n.userID(local))
	}
	count := 0
	after := valise.DeviceID("")
	for {
		devs, err := n.store.ListDevices(ctx, local, after, 1000)
		if err != nil {
			return storage.User{}, 0, err
		}
		count += len(devs)
		if len(devs) < 1000 {
			break
		}
		after = devs[len(devs)-1].ID
	}
	return u, count, nil
}

// adminUser parses a user an admin names: it must be on this node.
func (n *Node) adminUser(user string) (string, error) {
	u, err := valise.ParseUserID(user, n.cfg.Node)
	if err != nil {
		return "", err
	}
	if u.Node != n.cfg.Node {
		return "", valise.Errorf(valise.KindInvalid, "user %s is not on this node (%s)", u, n.cfg.Node)
	}
	return u.Localpart, nil
}

// ListUsers lists users after the given localpart.
func (n *Node) ListUsers(ctx context.Context, after string, limit int) ([]storage.User, error) {
	return n.store.ListUsers(ctx, after, limit)
}

// SetUserActive deactivates (revoking every device) or reactivates a user.
func (n *Node) SetUserActive(ctx context.Context, actor, user string, active bool) error {
	local, err := n.adminUser(user)
	if err != nil {
		return err
	}
	action := "user.deactivate"
	if active {
		action = "user.reactivate"
	}
	if err := n.store.SetUserActive(ctx, local, active, n.audit(actor, action, n.userID(local).String(), "")); err != nil {
		return notFound(err, "user %s not found", n.userID(local))
	}
	if !active {
		n.hub.revoke(local, "")
	}
	n.log.InfoContext(ctx, "user state changed", "user", n.userID(local).String(), "active", active, "actor", actor)
	return nil
}

// ResetPassword sets a user's password.
func (n *Node) ResetPassword(ctx context.Context, actor, user, password string) error {
	local, err := n.adminUser(user)
	if err != nil {
		return err
	}
	if err := checkNewPassword(password); err != nil {
		return err
	}
	var hash string
	if err := n.hash(ctx, func() { hash = HashPassword(n.cfg.Password, password) }); err != nil {
		return err
	}
	if err := n.store.SetPasswordHash(ctx, local, hash, n.audit(actor, "user.reset_password", n.userID(local).String(), "")); err != nil {
		return notFound(err, "user %s not found", n.userID(local))
	}
	n.log.InfoContext(ctx, "password reset", "user", n.userID(local).String(), "actor", actor)
	return nil
}

// AdminListDevices lists a user's devices; an unknown user is NotFound.
func (n *Node) AdminListDevices(ctx context.Context, user string, after valise.DeviceID, limit int) ([]storage.Device, error) {
	local, err := n.adminUser(user)
	if err != nil {
		return nil, err
	}
	if _, err := n.store.GetUser(ctx, local); err != nil {
		return nil, notFound(err, "user %s not found", n.userID(local))
	}
	return n.store.ListDevices(ctx, local, after, limit)
}

// AdminRevokeDevice revokes a device of a user.
func (n *Node) AdminRevokeDevice(ctx context.Context, actor, user, device string) error {
	local, err := n.adminUser(user)
	if err != nil {
		return err
	}
	id, err := valise.ParseDeviceID(device)
	if err != nil {
		return err
	}
	return n.DeleteDevice(ctx, local, id, n.audit(actor, "device.revoke", n.userID(local).String(), string(id)))
}

// ListAudit lists audit events after seq.
func (n *Node) ListAudit(ctx context.Context, after int64, limit int) ([]storage.AuditEvent, error) {
	return n.store.ListAudit(ctx, after, limit)
}
