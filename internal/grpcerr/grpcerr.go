// Package grpcerr turns the errors of Valise's services into the gRPC
// statuses their callers see: the public text of a *valise.Error with the
// code of its kind (and a google.rpc.RetryInfo for KindExhausted), and
// nothing of any other error. The client, admin and federation services
// all answer through it.
package grpcerr

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/valise-im/valise"
)

var kindCodes = map[valise.Kind]codes.Code{
	valise.KindInvalid:         codes.InvalidArgument,
	valise.KindNotFound:        codes.NotFound,
	valise.KindAlreadyExists:   codes.AlreadyExists,
	valise.KindPermission:      codes.PermissionDenied,
	valise.KindUnauthenticated: codes.Unauthenticated,
	valise.KindExhausted:       codes.ResourceExhausted,
	valise.KindPrecondition:    codes.FailedPrecondition,
	valise.KindUnavailable:     codes.Unavailable,
}

// Public maps err to the status error a caller may see when err is a
// status made for the caller (passed through as it is), a context error,
// or a *valise.Error of a known kind (its public text only). ok is false
// for anything else, which the caller must treat as internal.
func Public(err error) (st error, ok bool) {
	// Only a status made for the caller passes through; a status wrapped
	// in context (from a call to another service) is not public.
	if _, isStatus := err.(interface{ GRPCStatus() *status.Status }); isStatus {
		return err, true
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled"), true
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded"), true
	}
	var e *valise.Error
	if !errors.As(err, &e) {
		return nil, false
	}
	code, known := kindCodes[e.Kind]
	if !known {
		return nil, false
	}
	s := status.New(code, e.Public)
	if e.Kind == valise.KindExhausted && e.RetryAfter > 0 {
		s = WithRetry(s, e.RetryAfter)
	}
	return s.Err(), true
}

// Status is Public with every other error (nil aside) turned into
// INTERNAL "internal error".
func Status(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := Public(err); ok {
		return st
	}
	return status.Error(codes.Internal, "internal error")
}

// WithRetry adds a RetryInfo detail of d to s.
func WithRetry(s *status.Status, d time.Duration) *status.Status {
	if ds, err := s.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
		return ds
	}
	return s
}
