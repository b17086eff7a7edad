package server

import (
	"errors"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/grpcerr"
	"github.com/valise-im/valise/storage"
)

// toStatus maps an error to the gRPC status a client sees (see
// grpcerr.Status): only text of a *valise.Error crosses the wire.
func toStatus(err error) error { return grpcerr.Status(err) }

// notFound turns storage.ErrNotFound into a public NotFound error, passing
// other errors through.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, storage.ErrNotFound) {
		return valise.Errorf(valise.KindNotFound, format, args...)
	}
	return err
}
