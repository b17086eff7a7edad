package server

import (
	"context"
	"net"

	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	"github.com/valise-im/valise/storage"
)

// clientService adapts Node to clientv1.ClientServiceServer.
type clientService struct {
	clientv1.UnimplementedClientServiceServer
	n *Node
}

func remoteAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	// One IPv6 client usually holds a whole /64: limit it as one address.
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

func (s *clientService) Login(ctx context.Context, req *clientv1.LoginRequest) (*clientv1.LoginResponse, error) {
	res, err := s.n.Login(ctx, req.GetUser(), req.GetPassword(), req.GetDeviceDisplayName(), remoteAddr(ctx))
	if err != nil {
		return nil, err
	}
	return &clientv1.LoginResponse{User: res.User.String(), DeviceId: string(res.Device), AccessToken: string(res.Token)}, nil
}

func (s *clientService) Logout(ctx context.Context, _ *clientv1.LogoutRequest) (*clientv1.LogoutResponse, error) {
	c := callerFrom(ctx)
	if err := s.n.DeleteDevice(ctx, c.User, c.Device, nil); err != nil {
		return nil, err
	}
	return &clientv1.LogoutResponse{}, nil
}

func deviceProto(d storage.Device) *clientv1.Device {
	return &clientv1.Device{DeviceId: string(d.ID), DisplayName: d.DisplayName, CreatedTime: timestamppb.New(d.CreatedAt), HasKeys: d.HasKeys}
}

func (s *clientService) ListDevices(ctx context.Context, req *clientv1.ListDevicesRequest) (*clientv1.ListDevicesResponse, error) {
	c := callerFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodePageToken("devices", req.GetPageToken())
	if err != nil {
		return nil, err
	}
	devs, err := s.n.ListDevices(ctx, c.User, valise.DeviceID(after), size)
	if err != nil {
		return nil, err
	}
	resp := &clientv1.ListDevicesResponse{}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, deviceProto(d))
	}
	if len(devs) > 0 {
		resp.NextPageToken = nextToken("devices", len(devs), size, string(devs[len(devs)-1].ID))
	}
	return resp, nil
}

func (s *clientService) DeleteDevice(ctx context.Context, req *clientv1.DeleteDeviceRequest) (*clientv1.DeleteDeviceResponse, error) {
	c := callerFrom(ctx)
	id, err := valise.ParseDeviceID(req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	if err := s.n.DeleteDevice(ctx, c.User, id, nil); err != nil {
		return nil, err
	}
	return &clientv1.DeleteDeviceResponse{}, nil
}

func preKeyFromProto(k *clientv1.PreKey) valise.PreKey {
	return valise.PreKey{KeyID: k.GetKeyId(), PublicKey: k.GetPublicKey(), Signature: k.GetSignature()}
}

func preKeyProto(k valise.PreKey) *clientv1.PreKey {
	return &clientv1.PreKey{KeyId: k.KeyID, PublicKey: k.PublicKey, Signature: k.Signature}
}

func (s *clientService) PublishDeviceKeys(ctx context.Context, req *clientv1.PublishDeviceKeysRequest) (*clientv1.PublishDeviceKeysResponse, error) {
	k := storage.PublishKeys{IdentityKey: req.GetIdentityKey()}
	if req.SignedPrekey != nil {
		k.SignedPreKey = preKeyFromProto(req.SignedPrekey)
	}
	for _, otk := range req.GetOneTimePrekeys() {
		k.OneTimeKeys = append(k.OneTimeKeys, preKeyFromProto(otk))
	}
	count, err := s.n.PublishKeys(ctx, callerFrom(ctx), k, req.SignedPrekey != nil)
	if err != nil {
		return nil, err
	}
	return &clientv1.PublishDeviceKeysResponse{OneTimeKeyCount: uint32(count)}, nil
}

func (s *clientService) CountOneTimeKeys(ctx context.Context, _ *clientv1.CountOneTimeKeysRequest) (*clientv1.CountOneTimeKeysResponse, error) {
	count, err := s.n.CountOneTimeKeys(ctx, callerFrom(ctx))
	if err != nil {
		return nil, err
	}
	return &clientv1.CountOneTimeKeysResponse{OneTimeKeyCount: uint32(count)}, nil
}

func (s *clientService) GetDeviceKeys(ctx context.Context, req *clientv1.GetDeviceKeysRequest) (*clientv1.GetDeviceKeysResponse, error) {
	user, keys, err := s.n.GetDeviceKeys(ctx, callerFrom(ctx), req.GetUser())
	if err != nil {
		return nil, err
	}
	resp := &clientv1.GetDeviceKeysResponse{User: user.String()}
	for _, k := range keys {
		resp.Devices = append(resp.Devices, &clientv1.DeviceKeys{DeviceId: string(k.Device), IdentityKey: k.IdentityKey, SignedPrekey: preKeyProto(k.SignedPreKey)})
	}
	return resp, nil
}

func (s *clientService) ClaimOneTimeKey(ctx context.Context, req *clientv1.ClaimOneTimeKeyRequest) (*clientv1.ClaimOneTimeKeyResponse, error) {
	k, fallback, err := s.n.ClaimOneTimeKey(ctx, callerFrom(ctx), req.GetUser(), req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	return &clientv1.ClaimOneTimeKeyResponse{DeviceId: req.GetDeviceId(), Key: preKeyProto(k), Fallback: fallback}, nil
}

func (s *clientService) SendEnvelopes(ctx context.Context, req *clientv1.SendEnvelopesRequest) (*clientv1.SendEnvelopesResponse, error) {
	envs := make([]OutgoingEnvelope, len(req.GetEnvelopes()))
	for i, e := range req.GetEnvelopes() {
		envs[i] = OutgoingEnvelope{RecipientUser: e.GetRecipientUser(), RecipientDevice: e.GetRecipientDeviceId(), Ciphertext: e.GetCiphertext()}
	}
	ids, err := s.n.Send(ctx, callerFrom(ctx), req.GetIdempotencyKey(), envs)
	if err != nil {
		return nil, err
	}
	resp := &clientv1.SendEnvelopesResponse{EnvelopeIds: make([]string, len(ids))}
	for i, id := range ids {
		resp.EnvelopeIds[i] = string(id)
	}
	return resp, nil
}

func (s *clientService) StreamInbox(req *clientv1.StreamInboxRequest, stream clientv1.ClientService_StreamInboxServer) error {
	ctx := stream.Context()
	return s.n.StreamInbox(ctx, callerFrom(ctx), req.GetAfterCursor(), func(e valise.Envelope) error {
		if f := e.Failure; f != nil {
			return stream.Send(&clientv1.StreamInboxResponse{
				EnvelopeId: string(e.ID),
				ServerTime: timestamppb.New(e.ServerTime),
				Cursor:     e.Cursor,
				DeliveryFailure: &clientv1.DeliveryFailure{
					EnvelopeId:        string(f.EnvelopeID),
					RecipientUser:     f.Recipient.String(),
					RecipientDeviceId: string(f.RecipientDevice),
					Reason:            string(f.Reason),
				},
			})
		}
		return stream.Send(&clientv1.StreamInboxResponse{
			EnvelopeId:     string(e.ID),
			SenderUser:     e.Sender.String(),
			SenderDeviceId: string(e.SenderDevice),
			ServerTime:     timestamppb.New(e.ServerTime),
			Ciphertext:     e.Ciphertext,
			Cursor:         e.Cursor,
		})
	})
}

func (s *clientService) AckInbox(ctx context.Context, req *clientv1.AckInboxRequest) (*clientv1.AckInboxResponse, error) {
	if err := s.n.Ack(ctx, callerFrom(ctx), req.GetCursor()); err != nil {
		return nil, err
	}
	return &clientv1.AckInboxResponse{}, nil
}
