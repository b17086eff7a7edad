package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

const fakeNode = "node.test"

// fakeAdmin is a small in-memory AdminService. Times come from a fake
// clock that ticks one second per event, so output is deterministic.
type fakeAdmin struct {
	adminv1.UnimplementedAdminServiceServer

	mu        sync.Mutex
	now       time.Time
	users     map[string]*adminv1.User // by localpart@node
	passwords map[string]string
	devices   map[string][]*adminv1.Device
	audit     []*adminv1.AuditEvent
	peers     map[string]*adminv1.Peer // by name
	tampered  bool                     // ListAuditEvents reports chain_verified false
	calls     map[string]int           // by RPC name
}

func newFakeAdmin() *fakeAdmin {
	return &fakeAdmin{
		now:       time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		users:     map[string]*adminv1.User{},
		passwords: map[string]string{},
		devices:   map[string][]*adminv1.Device{},
		peers:     map[string]*adminv1.Peer{},
		calls:     map[string]int{},
	}
}

func (f *fakeAdmin) tick() *timestamppb.Timestamp {
	f.now = f.now.Add(time.Second)
	return timestamppb.New(f.now)
}

// addUser adds an active user without an audit event.
func (f *fakeAdmin) addUser(localpart string, devices ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := localpart + "@" + fakeNode
	ts := f.tick()
	f.users[id] = &adminv1.User{User: id, Active: true, CreatedTime: ts, UpdatedTime: ts}
	for _, d := range devices {
		f.devices[id] = append(f.devices[id], &adminv1.Device{DeviceId: d, DisplayName: "phone of " + localpart, CreatedTime: f.tick(), HasKeys: true})
	}
}

func (f *fakeAdmin) password(user string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passwords[user]
}

func (f *fakeAdmin) calledN(rpc string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[rpc]
}

// lookup parses s as the server does and, if mustExist, finds the user.
// Callers hold f.mu.
func (f *fakeAdmin) lookup(s string, mustExist bool) (string, error) {
	u, err := valise.ParseUserID(s, fakeNode)
	if err != nil {
		return "", status.Error(codes.InvalidArgument, err.Error())
	}
	if u.Node != fakeNode {
		return "", status.Errorf(codes.InvalidArgument, "user %s is not of this node", u)
	}
	if _, ok := f.users[u.String()]; mustExist && !ok {
		return "", status.Errorf(codes.NotFound, "user %s not found", u)
	}
	return u.String(), nil
}

// event appends an audit event. Callers hold f.mu.
func (f *fakeAdmin) event(action, target, detail string) {
	f.audit = append(f.audit, &adminv1.AuditEvent{
		Seq: int64(len(f.audit) + 1), Time: f.tick(), Actor: "unix:uid=1000",
		Action: action, Target: target, Detail: detail, Hash: []byte{byte(len(f.audit))},
	})
}

func checkPassword(pw string) error {
	if len(pw) < 8 || len(pw) > 1024 {
		return status.Error(codes.InvalidArgument, "password must be 8 to 1,024 bytes")
	}
	return nil
}

// page returns the page of items (sorted by key) after token, keyset style:
// the token is "k:" and the last key returned.
func page[T any](items []T, key func(T) string, size int32, token string) ([]T, string, error) {
	if size < 0 || size > 1000 {
		return nil, "", status.Error(codes.InvalidArgument, "page size must be 0 to 1,000")
	}
	if size == 0 {
		size = 100
	}
	after, ok := strings.CutPrefix(token, "k:")
	if token != "" && !ok {
		return nil, "", status.Error(codes.InvalidArgument, "malformed page token")
	}
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	start := 0
	if token != "" {
		start, _ = slices.BinarySearchFunc(items, after, func(it T, k string) int { return strings.Compare(key(it), k) })
		if start < len(items) && key(items[start]) == after {
			start++
		}
	}
	end := min(start+int(size), len(items))
	next := ""
	if end < len(items) {
		next = "k:" + key(items[end-1])
	}
	return items[start:end], next, nil
}

func (f *fakeAdmin) CreateUser(_ context.Context, req *adminv1.CreateUserRequest) (*adminv1.CreateUserResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["CreateUser"]++
	id, err := f.lookup(req.GetUser(), false)
	if err != nil {
		return nil, err
	}
	if _, ok := f.users[id]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "user %s already exists", id)
	}
	if err := checkPassword(req.GetPassword()); err != nil {
		return nil, err
	}
	ts := f.tick()
	u := &adminv1.User{User: id, Active: true, CreatedTime: ts, UpdatedTime: ts}
	f.users[id], f.passwords[id] = u, req.GetPassword()
	f.event("user.create", id, "")
	return &adminv1.CreateUserResponse{User: proto.CloneOf(u)}, nil
}

func (f *fakeAdmin) ListUsers(_ context.Context, req *adminv1.ListUsersRequest) (*adminv1.ListUsersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListUsers"]++
	var all []*adminv1.User
	for _, u := range f.users {
		all = append(all, proto.CloneOf(u))
	}
	users, next, err := page(all, (*adminv1.User).GetUser, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &adminv1.ListUsersResponse{Users: users, NextPageToken: next}, nil
}

func (f *fakeAdmin) GetUser(_ context.Context, req *adminv1.GetUserRequest) (*adminv1.GetUserResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetUser"]++
	id, err := f.lookup(req.GetUser(), true)
	if err != nil {
		return nil, err
	}
	return &adminv1.GetUserResponse{User: proto.CloneOf(f.users[id]), DeviceCount: uint32(len(f.devices[id]))}, nil
}

func (f *fakeAdmin) setActive(rpc, action, user string, active bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[rpc]++
	id, err := f.lookup(user, true)
	if err != nil {
		return err
	}
	f.users[id].Active = active
	f.users[id].UpdatedTime = f.tick()
	if !active {
		delete(f.devices, id)
	}
	f.event(action, id, "")
	return nil
}

func (f *fakeAdmin) DeactivateUser(_ context.Context, req *adminv1.DeactivateUserRequest) (*adminv1.DeactivateUserResponse, error) {
	if err := f.setActive("DeactivateUser", "user.deactivate", req.GetUser(), false); err != nil {
		return nil, err
	}
	return &adminv1.DeactivateUserResponse{}, nil
}

func (f *fakeAdmin) ReactivateUser(_ context.Context, req *adminv1.ReactivateUserRequest) (*adminv1.ReactivateUserResponse, error) {
	if err := f.setActive("ReactivateUser", "user.reactivate", req.GetUser(), true); err != nil {
		return nil, err
	}
	return &adminv1.ReactivateUserResponse{}, nil
}

func (f *fakeAdmin) ResetPassword(_ context.Context, req *adminv1.ResetPasswordRequest) (*adminv1.ResetPasswordResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ResetPassword"]++
	id, err := f.lookup(req.GetUser(), true)
	if err != nil {
		return nil, err
	}
	if err := checkPassword(req.GetPassword()); err != nil {
		return nil, err
	}
	f.passwords[id] = req.GetPassword()
	f.event("user.reset_password", id, "")
	return &adminv1.ResetPasswordResponse{}, nil
}

func (f *fakeAdmin) ListUserDevices(_ context.Context, req *adminv1.ListUserDevicesRequest) (*adminv1.ListUserDevicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListUserDevices"]++
	id, err := f.lookup(req.GetUser(), true)
	if err != nil {
		return nil, err
	}
	devices, next, err := page(slices.Clone(f.devices[id]), (*adminv1.Device).GetDeviceId, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &adminv1.ListUserDevicesResponse{Devices: devices, NextPageToken: next}, nil
}

func (f *fakeAdmin) RevokeDevice(_ context.Context, req *adminv1.RevokeDeviceRequest) (*adminv1.RevokeDeviceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["RevokeDevice"]++
	id, err := f.lookup(req.GetUser(), true)
	if err != nil {
		return nil, err
	}
	if _, err := valise.ParseDeviceID(req.GetDeviceId()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	i := slices.IndexFunc(f.devices[id], func(d *adminv1.Device) bool { return d.GetDeviceId() == req.GetDeviceId() })
	if i < 0 {
		return nil, status.Errorf(codes.NotFound, "device %s of user %s not found", req.GetDeviceId(), id)
	}
	f.devices[id] = slices.Delete(f.devices[id], i, i+1)
	f.event("device.revoke", id, "device "+req.GetDeviceId())
	return &adminv1.RevokeDeviceResponse{}, nil
}

func (f *fakeAdmin) ListAuditEvents(_ context.Context, req *adminv1.ListAuditEventsRequest) (*adminv1.ListAuditEventsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListAuditEvents"]++
	seqKey := func(e *adminv1.AuditEvent) string { return fmt.Sprintf("%020d", e.GetSeq()) }
	events, next, err := page(slices.Clone(f.audit), seqKey, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &adminv1.ListAuditEventsResponse{Events: events, NextPageToken: next, ChainVerified: !f.tampered}, nil
}
