package valise_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/valise-im/valise"
)

func TestKindOf(t *testing.T) {
	notFound := valise.Errorf(valise.KindNotFound, "no user %q", "alice")
	tests := []struct {
		name string
		err  error
		want valise.Kind
	}{
		{"nil", nil, valise.KindInternal},
		{"plain", errors.New("disk on fire"), valise.KindInternal},
		{"direct", notFound, valise.KindNotFound},
		{"wrapped once", fmt.Errorf("lookup: %w", notFound), valise.KindNotFound},
		{"wrapped twice", fmt.Errorf("rpc: %w", fmt.Errorf("lookup: %w", notFound)), valise.KindNotFound},
		{"joined", errors.Join(errors.New("plain"), valise.Errorf(valise.KindInvalid, "bad")), valise.KindInvalid},
		{"outermost wins", &valise.Error{Kind: valise.KindUnavailable, Public: "later", Err: notFound}, valise.KindUnavailable},
		{"exhausted", valise.Exhausted(time.Second, "slow down"), valise.KindExhausted},
		{"plain text with %v does not wrap", fmt.Errorf("lookup: %v", notFound), valise.KindInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := valise.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorfFormatsPublicText(t *testing.T) {
	err := valise.Errorf(valise.KindInvalid, "page_size %d is too big", 5)
	var e *valise.Error
	if !errors.As(err, &e) {
		t.Fatalf("Errorf returned %T, want *valise.Error", err)
	}
	if got, want := e.Public, "page_size 5 is too big"; got != want {
		t.Errorf("Public = %q, want %q", got, want)
	}
	if got, want := err.Error(), e.Public; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestErrorWrapsPrivateCause(t *testing.T) {
	err := fmt.Errorf("read: %w", &valise.Error{Kind: valise.KindUnavailable, Public: "try again", Err: io.ErrUnexpectedEOF})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false, want true", err)
	}
	if got, want := err.Error(), "read: try again: unexpected EOF"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestExhaustedRetryAfter(t *testing.T) {
	err := fmt.Errorf("send: %w", valise.Exhausted(1500*time.Millisecond, "device %s sends too fast", "DVX"))
	var e *valise.Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *valise.Error) = false, want true", err)
	}
	if e.Kind != valise.KindExhausted {
		t.Errorf("Kind = %v, want %v", e.Kind, valise.KindExhausted)
	}
	if got, want := e.RetryAfter, 1500*time.Millisecond; got != want {
		t.Errorf("RetryAfter = %v, want %v", got, want)
	}
	if got, want := e.Public, "device DVX sends too fast"; got != want {
		t.Errorf("Public = %q, want %q", got, want)
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		kind valise.Kind
		want string
	}{
		{valise.KindInternal, "internal"},
		{valise.KindInvalid, "invalid"},
		{valise.KindNotFound, "not found"},
		{valise.KindAlreadyExists, "already exists"},
		{valise.KindPermission, "permission denied"},
		{valise.KindUnauthenticated, "unauthenticated"},
		{valise.KindExhausted, "resource exhausted"},
		{valise.KindPrecondition, "failed precondition"},
		{valise.KindUnavailable, "unavailable"},
		{valise.Kind(42), "kind(42)"},
		{valise.Kind(-1), "kind(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("Kind(%d).String() panicked: %v", int(tt.kind), p)
				}
			}()
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", int(tt.kind), got, tt.want)
			}
		})
	}
}
