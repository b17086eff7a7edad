package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// bearer sends the device's access token as `authorization: Bearer` on
// every call, and only over a secure transport. Before login it sends
// nothing.
type bearer struct {
	mu    sync.Mutex
	token string
}

func (b *bearer) set(token string) {
	b.mu.Lock()
	b.token = token
	b.mu.Unlock()
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b *bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
		return nil, fmt.Errorf("client: refusing to send the access token over an insecure connection: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b *bearer) RequireTransportSecurity() bool { return true }

// String never shows the token.
func (b *bearer) String() string { return "bearer{redacted}" }

// dial connects to the node over TLS 1.3. The connection is lazy: errors
// reaching the node surface on the first call.
func dial(cfg Config, server, name string, roots *x509.CertPool, creds *bearer) (*grpc.ClientConn, error) {
	if server == "" {
		return nil, errors.New("client: no server given (HOST:PORT of the home node)")
	}
	name, err := serverName(server, name)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: name}
	opts := append([]grpc.DialOption{}, cfg.DialOptions...)
	opts = append(opts,
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithPerRPCCredentials(creds),
		// Nodes let clients ping every 30s or more, also without a stream;
		// this keeps a long inbox stream alive behind NATs.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 45 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
	)
	conn, err := grpc.NewClient(server, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: server %s: %w", server, err)
	}
	return conn, nil
}

// rootsFor returns the CAs to trust: cfg.RootCAs, else cfg.RootCAsPEM,
// else the saved PEM, else nil (the system's roots).
func rootsFor(cfg Config, savedPEM string) (*x509.CertPool, error) {
	if cfg.RootCAs != nil {
		return cfg.RootCAs, nil
	}
	pem := cfg.RootCAsPEM
	if len(pem) == 0 {
		pem = []byte(savedPEM)
	}
	if len(pem) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("client: no PEM certificate in the trusted CAs")
	}
	return pool, nil
}

// call runs one unary call with the configured timeout.
func call[T any](ctx context.Context, c *Client, f func(ctx context.Context, rpc clientv1.ClientServiceClient) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	return f(ctx, c.rpc)
}

// transient reports whether a failed call may be repeated as is.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// retryAttempts and retryBase shape the retries of idempotent calls:
// 0.25s, 0.5s, 1s, 2s (±20%) between five attempts. A call the node
// refused as too fast (ResourceExhausted) is repeated only when it says
// to retry within maxRetryAfter, after the delay it names.
const (
	retryAttempts = 5
	retryBase     = 250 * time.Millisecond
	maxRetryAfter = 2 * time.Second
)

// retryInfo returns the retry delay a status carries (google.rpc.RetryInfo).
func retryInfo(err error) (time.Duration, bool) {
	for _, det := range status.Convert(err).Details() {
		if ri, ok := det.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// retryDelay returns how long to wait before repeating a call that failed
// with err at the given backoff delay, and whether to repeat it at all.
func retryDelay(err error, backoff time.Duration) (time.Duration, bool) {
	if transient(err) {
		return backoff, true
	}
	if status.Code(err) == codes.ResourceExhausted {
		if d, ok := retryInfo(err); ok && d >= 0 && d <= maxRetryAfter {
			return max(d, backoff/2), true
		}
	}
	return 0, false
}

// retry runs an idempotent call, repeating it after transient errors with
// exponential backoff while ctx lasts.
func retry[T any](ctx context.Context, c *Client, f func(ctx context.Context, rpc clientv1.ClientServiceClient) (T, error)) (T, error) {
	var zero T
	delay := retryBase
	for attempt := 1; ; attempt++ {
		res, err := call(ctx, c, f)
		if err == nil || attempt == retryAttempts || ctx.Err() != nil {
			return res, err
		}
		wait, again := retryDelay(err, delay)
		if !again {
			return res, err
		}
		c.log.DebugContext(ctx, "retrying call", "attempt", attempt, "code", status.Code(err).String())
		jitter := time.Duration(rand.Float64() * 0.2 * float64(wait))
		select {
		case <-time.After(wait + jitter):
		case <-ctx.Done():
			return zero, err
		}
		delay *= 2
	}
}
