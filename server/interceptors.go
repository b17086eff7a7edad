package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type callerKey struct{}

func callerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// interceptors holds what every gRPC call of a service passes through:
// panic recovery, error mapping, one log line per failed call, metrics,
// the unary deadline, and (for the client service) authentication.
type interceptors struct {
	log      *slog.Logger
	metrics  *Metrics
	timeout  time.Duration
	auth     func(ctx context.Context, method string) (context.Context, error)
	noLogFor map[codes.Code]bool
}

func (ic *interceptors) finish(ctx context.Context, method string, err error, start time.Time) error {
	err = toStatus(err)
	code := status.Code(err)
	ic.metrics.requests.WithLabelValues(method, code.String()).Inc()
	if err != nil && !ic.noLogFor[code] {
		level := slog.LevelInfo
		if code == codes.Internal || code == codes.Unknown {
			level = slog.LevelError
		}
		ic.log.Log(ctx, level, "call failed", "method", method, "code", code.String(), "duration", time.Since(start))
	}
	return err
}

func (ic *interceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	var raw error
	defer func() {
		if p := recover(); p != nil {
			ic.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			raw, resp = status.Error(codes.Internal, "internal error"), nil
		}
		err = ic.finish(ctx, info.FullMethod, raw, start)
		if raw != nil {
			ic.logInternal(ctx, info.FullMethod, raw)
		}
	}()
	if ic.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ic.timeout)
		defer cancel()
	}
	if ic.auth != nil {
		if ctx, raw = ic.auth(ctx, info.FullMethod); raw != nil {
			return nil, raw
		}
	}
	resp, raw = handler(ctx, req)
	return resp, raw
}

// logInternal records the private text of an internal error, which the
// client never sees.
func (ic *interceptors) logInternal(ctx context.Context, method string, err error) {
	if _, ok := status.FromError(err); ok {
		return
	}
	if st := toStatus(err); status.Code(st) == codes.Internal {
		ic.log.ErrorContext(ctx, "internal error", "method", method, "err", err)
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (ic *interceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	ctx := ss.Context()
	var raw error
	defer func() {
		if p := recover(); p != nil {
			ic.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			raw = status.Error(codes.Internal, "internal error")
		}
		err = ic.finish(ctx, info.FullMethod, raw, start)
		if raw != nil {
			ic.logInternal(ctx, info.FullMethod, raw)
		}
	}()
	if ic.auth != nil {
		if ctx, raw = ic.auth(ctx, info.FullMethod); raw != nil {
			return raw
		}
	}
	raw = handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	return raw
}

// bearer extracts the token of an "authorization: Bearer <token>" header.
func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return t
		}
	}
	return ""
}

// clientAuth authenticates every ClientService call but Login; health and
// reflection need no token.
func (n *Node) clientAuth(ctx context.Context, method string) (context.Context, error) {
	if !strings.HasPrefix(method, "/valise.client.v1.ClientService/") || method == "/valise.client.v1.ClientService/Login" {
		return ctx, nil
	}
	c, err := n.Authenticate(ctx, bearer(ctx))
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}
