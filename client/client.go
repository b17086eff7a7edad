package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// Client is one logged-in device. Its methods may be called from several
// goroutines, except that only one Receive runs at a time.
type Client struct {
	cfg      Config
	log      *slog.Logger
	store    *store
	conn     *grpc.ClientConn
	rpc      clientv1.ClientServiceClient
	creds    *bearer
	user     valise.UserID
	device   string
	identity *e2ee.IdentityKey
	cache    sendCache
}

// Login logs user in to the node with password, creating a new device
// named deviceName, generates the device's keys, saves the state in
// cfg.StateDir and publishes the keys (Maintain). It refuses a state
// directory that already holds a logged-in device, or one used by another
// user. If only publishing fails, the device stays logged in and the next
// Open publishes.
func Login(ctx context.Context, cfg Config, user, password, deviceName string) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if password == "" {
		return nil, errors.New("client: login: empty password")
	}
	if err := valise.ValidateDisplayName(deviceName); err != nil {
		return nil, fmt.Errorf("client: login: %w", err)
	}
	roots, err := rootsFor(cfg, "")
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.StateDir, cfg.Passphrase, cfg.KDF)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, store: st, creds: &bearer{}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	// Refuse early, before the node creates a device for nothing.
	if err := c.checkCanLogin(user); err != nil {
		return nil, err
	}
	// Keys first: a failure here leaves nothing behind on the node.
	identity, err := e2ee.NewIdentityKey()
	if err != nil {
		return nil, fmt.Errorf("client: login: %w", err)
	}
	sec := &secrets{Version: stateVersion, IdentitySeed: bytes.Clone(identity.Seed()), OneTimeKeys: map[uint32][]byte{}}
	defer sec.wipe()
	spk, err := newSignedPreKey(identity, sec, cfg.Now())
	if err != nil {
		return nil, err
	}
	sec.SignedPreKeys = []*signedPreKey{spk}

	if c.conn, err = dial(cfg, cfg.Server, cfg.ServerName, roots, c.creds); err != nil {
		return nil, err
	}
	c.rpc = clientv1.NewClientServiceClient(c.conn)
	resp, err := call(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.LoginResponse, error) {
		return rpc.Login(ctx, &clientv1.LoginRequest{User: user, Password: password, DeviceDisplayName: deviceName})
	})
	if err != nil {
		return nil, fmt.Errorf("client: login: %w", err)
	}
	if c.user, err = valise.ParseUserID(resp.GetUser(), ""); err != nil {
		return nil, fmt.Errorf("client: login: the node answered a bad user: %w", err)
	}
	if _, err := valise.ParseDeviceID(resp.GetDeviceId()); err != nil {
		return nil, fmt.Errorf("client: login: the node answered a bad device id: %w", err)
	}
	c.device, c.identity = resp.GetDeviceId(), identity
	c.creds.set(resp.GetAccessToken())
	sec.AccessToken = resp.GetAccessToken()

	name, _ := serverName(cfg.Server, cfg.ServerName)
	newState := &state{
		Version: stateVersion, Server: cfg.Server, ServerName: name, CAPEM: string(cfg.RootCAsPEM),
		User: c.user.String(), Device: c.device, Pins: map[string]map[string]*pin{},
	}
	err = c.store.create(func(old *state) error {
		if old != nil && old.User != "" && old.User != newState.User {
			return fmt.Errorf("client: the state directory belongs to %s, not %s; use another one", old.User, newState.User)
		}
		if old != nil {
			newState.Pins = old.Pins
		}
		return nil
	}, newState, sec)
	if err != nil {
		// Do not leave a device on the node that no one holds the keys of.
		if _, lerr := call(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.LogoutResponse, error) {
			return rpc.Logout(ctx, &clientv1.LogoutRequest{})
		}); lerr != nil {
			c.log.WarnContext(ctx, "revoking the new device failed", "device", c.device, "err", lerr)
		}
		return nil, err
	}
	c.log.InfoContext(ctx, "logged in", "user", c.user.String(), "device", c.device)
	if err := c.Maintain(ctx); err != nil {
		return nil, fmt.Errorf("client: logged in as %s (device %s) but publishing the keys failed; the next Open retries: %w", c.user, c.device, err)
	}
	ok = true
	return c, nil
}

// checkCanLogin fails when the directory holds a logged-in device or
// belongs to another user.
func (c *Client) checkCanLogin(user string) error {
	return c.store.locked(false, func() error {
		l, err := c.store.load()
		defer l.sec.wipe()
		if l.st != nil && l.st.Device != "" {
			return ErrLoggedIn
		}
		if err != nil || l.st == nil {
			return err
		}
		if u, err := valise.ParseUserID(user, ""); err == nil && l.st.User != "" && u.String() != l.st.User {
			return fmt.Errorf("client: the state directory belongs to %s, not %s; use another one", l.st.User, u)
		}
		return nil
	})
}

// Open loads the logged-in device of cfg.StateDir and, unless
// cfg.SkipMaintain, runs Maintain. Server, ServerName and the CAs default
// to those saved at Login.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.StateDir, cfg.Passphrase, cfg.KDF)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger, store: st, creds: &bearer{}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	var server, name, caPEM string
	err = c.store.view(func(st *state, sec *secrets) error {
		server, name, caPEM = st.Server, st.ServerName, st.CAPEM
		c.device = st.Device
		if c.user, err = valise.ParseUserID(st.User, ""); err != nil {
			return fmt.Errorf("client: state.json: %w", err)
		}
		c.creds.set(sec.AccessToken)
		c.identity, err = e2ee.IdentityKeyFromSeed(bytes.Clone(sec.IdentitySeed))
		return err
	})
	if err != nil {
		return nil, err
	}
	if cfg.Server != "" {
		server, name = cfg.Server, cfg.ServerName
	} else if cfg.ServerName != "" {
		name = cfg.ServerName
	}
	roots, err := rootsFor(cfg, caPEM)
	if err != nil {
		return nil, err
	}
	if c.conn, err = dial(cfg, server, name, roots, c.creds); err != nil {
		return nil, err
	}
	c.rpc = clientv1.NewClientServiceClient(c.conn)
	if !cfg.SkipMaintain {
		if err := c.Maintain(ctx); err != nil {
			if status.Code(err) == codes.Unauthenticated {
				err = fmt.Errorf("%w: %w", ErrRevoked, err)
			}
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// ErrRevoked is returned by Open when the node no longer accepts the
// device's token: the device was revoked (by another device, an admin, or
// a deactivation). Logout still clears the local state.
var ErrRevoked = errors.New("client: the node no longer accepts this device (revoked)")

// User returns the device's user, "localpart@node".
func (c *Client) User() string { return c.user.String() }

// DeviceID returns the device's id.
func (c *Client) DeviceID() string { return c.device }

// Close closes the connection and releases the state directory. It does
// not log out.
func (c *Client) Close() error {
	var err error
	if c.conn != nil {
		err = c.conn.Close()
		c.conn = nil
	}
	if c.store != nil {
		err = errors.Join(err, c.store.close())
	}
	return err
}

// Logout revokes the device on the node (its token, keys and inbox) and
// deletes the local secrets, cursor and seen ids. The history and the
// pins stay in the state directory; remove the directory to forget them
// too. A device the node already revoked is wiped locally all the same;
// when the node cannot be reached, nothing is deleted.
func (c *Client) Logout(ctx context.Context) error {
	_, err := call(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.LogoutResponse, error) {
		return rpc.Logout(ctx, &clientv1.LogoutRequest{})
	})
	if err != nil && status.Code(err) != codes.Unauthenticated {
		return fmt.Errorf("client: logout: %w", err)
	}
	c.creds.set("")
	if err := c.store.wipe(); err != nil {
		return err
	}
	c.log.InfoContext(ctx, "logged out", "device", c.device)
	return nil
}
