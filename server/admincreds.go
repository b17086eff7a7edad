package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/valise-im/valise"
)

// UnixAuthInfo identifies the process at the other end of the admin socket.
type UnixAuthInfo struct {
	credentials.CommonAuthInfo
	UID uint32
	PID int32
}

// AuthType names the mechanism.
func (UnixAuthInfo) AuthType() string { return "unix-peercred" }

// UnixCreds are transport credentials for the admin unix socket: the
// handshake reads the peer's credentials from the kernel (SO_PEERCRED) and
// refuses every user but the node's own and root. The socket file's mode
// (0600) is the first fence; this is the second.
type UnixCreds struct {
	// Allowed lists the uids that may administer the node; empty means the
	// current process's uid and root.
	Allowed []uint32
}

var errNotUnix = errors.New("admin: not a unix socket connection")

// ServerHandshake checks the peer's uid.
func (u UnixCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, errNotUnix
	}
	uid, pid, err := peerCred(uc)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: peer credentials: %w", err)
	}
	allowed := u.Allowed
	if len(allowed) == 0 {
		allowed = []uint32{uint32(os.Getuid()), 0}
	}
	if !slices.Contains(allowed, uid) {
		return nil, nil, fmt.Errorf("admin: uid %d may not administer this node", uid)
	}
	return conn, UnixAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, UID: uid, PID: pid}, nil
}

// ClientHandshake is not used: UnixCreds are server-side only.
func (UnixCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, UnixAuthInfo{}, nil
}

// Info describes the protocol.
func (UnixCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

// Clone returns a copy.
func (u UnixCreds) Clone() credentials.TransportCredentials {
	return UnixCreds{Allowed: slices.Clone(u.Allowed)}
}

// OverrideServerName is a no-op.
func (UnixCreds) OverrideServerName(string) error { return nil }

// adminAuth names the admin behind a call for the audit log, and refuses
// anyone else.
func adminAuth(ctx context.Context, method string) (context.Context, error) {
	actor, err := adminActor(ctx)
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, actorKey{}, actor), nil
}

type actorKey struct{}

func actorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

func adminActor(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if ok {
		switch info := p.AuthInfo.(type) {
		case UnixAuthInfo:
			return fmt.Sprintf("unix:uid=%d", info.UID), nil
		case credentials.TLSInfo:
			chains := info.State.VerifiedChains
			if len(chains) > 0 && len(chains[0]) > 0 {
				return "cert:" + chains[0][0].Subject.CommonName, nil
			}
		}
	}
	return "", valise.Errorf(valise.KindPermission, "caller is not an admin")
}
