package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func TestToStatusKinds(t *testing.T) {
	tests := []struct {
		kind valise.Kind
		want codes.Code
	}{
		{valise.KindInvalid, codes.InvalidArgument},
		{valise.KindNotFound, codes.NotFound},
		{valise.KindAlreadyExists, codes.AlreadyExists},
		{valise.KindPermission, codes.PermissionDenied},
		{valise.KindUnauthenticated, codes.Unauthenticated},
		{valise.KindExhausted, codes.ResourceExhausted},
		{valise.KindPrecondition, codes.FailedPrecondition},
		{valise.KindUnavailable, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			err := fmt.Errorf("layer: %w", &valise.Error{Kind: tt.kind, Public: "public text", Err: errors.New("private detail")})
			st := status.Convert(toStatus(err))
			if st.Code() != tt.want {
				t.Errorf("code = %v, want %v", st.Code(), tt.want)
			}
			if got, want := st.Message(), "public text"; got != want {
				t.Errorf("message = %q, want %q (only the public text)", got, want)
			}
		})
	}
}

func TestToStatusHidesInternalText(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"plain", errors.New("pq: password authentication failed for user valise")},
		{"wrapped plain", fmt.Errorf("inbox: ack: %w", errors.New("disk /var/lib/valise full"))},
		{"storage sentinel", fmt.Errorf("lookup: %w", storage.ErrNotFound)},
		{"kind internal", valise.Errorf(valise.KindInternal, "secret detail")},
		{"unknown kind", valise.Errorf(valise.Kind(99), "secret detail")},
		{"wrapped status of another call", fmt.Errorf("peer b.example: %w", status.Error(codes.NotFound, "secret peer detail"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(toStatus(tt.err))
			if st.Code() != codes.Internal {
				t.Errorf("code = %v, want %v", st.Code(), codes.Internal)
			}
			if got, want := st.Message(), "internal error"; got != want {
				t.Errorf("message = %q, want %q", got, want)
			}
		})
	}
}

func TestToStatusContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"canceled", context.Canceled, codes.Canceled},
		{"canceled ctx", fmt.Errorf("read inbox: %w", ctx.Err()), codes.Canceled},
		{"deadline", fmt.Errorf("send: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(toStatus(tt.err))
			if st.Code() != tt.want {
				t.Errorf("code = %v, want %v", st.Code(), tt.want)
			}
			if strings.Contains(st.Message(), ":") {
				t.Errorf("message = %q leaks the wrapping text", st.Message())
			}
		})
	}
}

func TestToStatusExhaustedRetryInfo(t *testing.T) {
	err := fmt.Errorf("send: %w", valise.Exhausted(1500*time.Millisecond, "this device sends too fast"))
	st := status.Convert(toStatus(err))
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code = %v, want %v", st.Code(), codes.ResourceExhausted)
	}
	var info *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			info = ri
		}
	}
	if info == nil {
		t.Fatalf("details = %v, want a RetryInfo", st.Details())
	}
	if got, want := info.GetRetryDelay().AsDuration(), 1500*time.Millisecond; got != want {
		t.Errorf("retry delay = %v, want %v", got, want)
	}
}

func TestToStatusExhaustedWithoutDelay(t *testing.T) {
	st := status.Convert(toStatus(valise.Exhausted(0, "quota used up")))
	if st.Code() != codes.ResourceExhausted || len(st.Details()) != 0 {
		t.Errorf("toStatus(Exhausted(0)) = %v with %d details, want %v without details", st.Code(), len(st.Details()), codes.ResourceExhausted)
	}
}

func TestToStatusPassesStatusThrough(t *testing.T) {
	in := status.Error(codes.Aborted, "already mapped")
	if got := toStatus(in); got != in {
		t.Errorf("toStatus(status error) = %v, want it unchanged", got)
	}
	if got := toStatus(nil); got != nil {
		t.Errorf("toStatus(nil) = %v, want nil", got)
	}
}

func TestNotFound(t *testing.T) {
	err := notFound(fmt.Errorf("get user: %w", storage.ErrNotFound), "no user %q", "alice")
	if k := valise.KindOf(err); k != valise.KindNotFound {
		t.Errorf("KindOf(notFound(ErrNotFound)) = %v, want %v", k, valise.KindNotFound)
	}
	if got, want := err.Error(), `no user "alice"`; got != want {
		t.Errorf("notFound(ErrNotFound) = %q, want %q", got, want)
	}
	other := errors.New("connection reset")
	if got := notFound(other, "no user"); got != other {
		t.Errorf("notFound(other) = %v, want it unchanged", got)
	}
	if got := notFound(nil, "no user"); got != nil {
		t.Errorf("notFound(nil) = %v, want nil", got)
	}
}
