package server

import (
	"context"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	"github.com/valise-im/valise/storage"
)

// adminService adapts Node to adminv1.AdminServiceServer.
type adminService struct {
	adminv1.UnimplementedAdminServiceServer
	n *Node
}

func (s *adminService) userProto(u storage.User) *adminv1.User {
	return &adminv1.User{User: s.n.userID(u.Localpart).String(), Active: u.Active, CreatedTime: timestamppb.New(u.CreatedAt), UpdatedTime: timestamppb.New(u.UpdatedAt)}
}

func (s *adminService) CreateUser(ctx context.Context, req *adminv1.CreateUserRequest) (*adminv1.CreateUserResponse, error) {
	u, err := s.n.CreateUser(ctx, actorFrom(ctx), req.GetUser(), req.GetPassword())
	if err != nil {
		return nil, err
	}
	return &adminv1.CreateUserResponse{User: s.userProto(u)}, nil
}

func (s *adminService) ListUsers(ctx context.Context, req *adminv1.ListUsersRequest) (*adminv1.ListUsersResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken("users", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	users, err := s.n.ListUsers(ctx, after, size)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListUsersResponse{}
	for _, u := range users {
		resp.Users = append(resp.Users, s.userProto(u))
	}
	if len(users) > 0 {
		resp.NextPageToken = nextToken("users", len(users), size, users[len(users)-1].Localpart)
	}
	return resp, nil
}

func (s *adminService) GetUser(ctx context.Context, req *adminv1.GetUserRequest) (*adminv1.GetUserResponse, error) {
	u, count, err := s.n.GetUser(ctx, req.GetUser())
	if err != nil {
		return nil, err
	}
	return &adminv1.GetUserResponse{User: s.userProto(u), DeviceCount: uint32(count)}, nil
}

func (s *adminService) DeactivateUser(ctx context.Context, req *adminv1.DeactivateUserRequest) (*adminv1.DeactivateUserResponse, error) {
	if err := s.n.SetUserActive(ctx, actorFrom(ctx), req.GetUser(), false); err != nil {
		return nil, err
	}
	return &adminv1.DeactivateUserResponse{}, nil
}

func (s *adminService) ReactivateUser(ctx context.Context, req *adminv1.ReactivateUserRequest) (*adminv1.ReactivateUserResponse, error) {
	if err := s.n.SetUserActive(ctx, actorFrom(ctx), req.GetUser(), true); err != nil {
		return nil, err
	}
	return &adminv1.ReactivateUserResponse{}, nil
}

func (s *adminService) ResetPassword(ctx context.Context, req *adminv1.ResetPasswordRequest) (*adminv1.ResetPasswordResponse, error) {
	if err := s.n.ResetPassword(ctx, actorFrom(ctx), req.GetUser(), req.GetPassword()); err != nil {
		return nil, err
	}
	return &adminv1.ResetPasswordResponse{}, nil
}

func (s *adminService) ListUserDevices(ctx context.Context, req *adminv1.ListUserDevicesRequest) (*adminv1.ListUserDevicesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken("devices", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	devs, err := s.n.AdminListDevices(ctx, req.GetUser(), valise.DeviceID(after), size)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListUserDevicesResponse{}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, &adminv1.Device{DeviceId: string(d.ID), DisplayName: d.DisplayName, CreatedTime: timestamppb.New(d.CreatedAt), HasKeys: d.HasKeys})
	}
	if len(devs) > 0 {
		resp.NextPageToken = nextToken("devices", len(devs), size, string(devs[len(devs)-1].ID))
	}
	return resp, nil
}

func (s *adminService) RevokeDevice(ctx context.Context, req *adminv1.RevokeDeviceRequest) (*adminv1.RevokeDeviceResponse, error) {
	if err := s.n.AdminRevokeDevice(ctx, actorFrom(ctx), req.GetUser(), req.GetDeviceId()); err != nil {
		return nil, err
	}
	return &adminv1.RevokeDeviceResponse{}, nil
}

func (s *adminService) ListAuditEvents(ctx context.Context, req *adminv1.ListAuditEventsRequest) (*adminv1.ListAuditEventsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	tok, err := decodePageToken("audit", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var after int64
	if tok != "" {
		if after, err = strconv.ParseInt(tok, 10, 64); err != nil || after < 0 {
			return nil, valise.Errorf(valise.KindInvalid, "page_token is malformed")
		}
	}
	// Read one event before the page so its first link can be checked.
	from := max(after-1, 0)
	events, err := s.n.ListAudit(ctx, from, size+int(after-from))
	if err != nil {
		return nil, err
	}
	var prev []byte
	if after > 0 && len(events) > 0 && events[0].Seq == after {
		prev, events = events[0].Hash, events[1:]
	}
	resp := &adminv1.ListAuditEventsResponse{ChainVerified: storage.VerifyAuditChain(prev, events) == 0}
	for _, e := range events {
		resp.Events = append(resp.Events, &adminv1.AuditEvent{Seq: e.Seq, Time: timestamppb.New(e.Time), Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail, Hash: e.Hash})
	}
	if len(events) > 0 {
		resp.NextPageToken = nextToken("audit", len(events), size, strconv.FormatInt(events[len(events)-1].Seq, 10))
	}
	return resp, nil
}
