package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
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

// toStatus maps an error to the gRPC status a client sees. Only text of a
// *valise.Error crosses the wire; anything else is Internal with a generic
// message.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	// Only a status made for the client passes through as it is; a status
	// wrapped in context (from a call to another service) is internal.
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	var e *valise.Error
	if !errors.As(err, &e) {
		return status.Error(codes.Internal, "internal error")
	}
	code, ok := kindCodes[e.Kind]
	if !ok {
		return status.Error(codes.Internal, "internal error")
	}
	st := status.New(code, e.Public)
	if e.Kind == valise.KindExhausted && e.RetryAfter > 0 {
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// notFound turns storage.ErrNotFound into a public NotFound error, passing
// other errors through.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, storage.ErrNotFound) {
		return valise.Errorf(valise.KindNotFound, format, args...)
	}
	return err
}
