package valise

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error by what a caller can do about it. The server maps
// each kind to one gRPC status code; KindInternal (the zero value) is never
// explained to a client.
type Kind int

// The error kinds.
const (
	KindInternal        Kind = iota // a bug or an unavailable dependency; no detail leaves the node
	KindInvalid                     // the request is malformed or breaks a bound
	KindNotFound                    // the named user, device or object does not exist
	KindAlreadyExists               // the object to create exists already
	KindPermission                  // the caller is known but not allowed (e.g. a deactivated user)
	KindUnauthenticated             // no, a wrong or a revoked credential
	KindExhausted                   // a rate or quota is used up; retry later
	KindPrecondition                // the system is not in a state that allows the request
	KindUnavailable                 // a transient failure; retry
)

var kindNames = [...]string{"internal", "invalid", "not found", "already exists", "permission denied", "unauthenticated", "resource exhausted", "failed precondition", "unavailable"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is an error whose message is safe to show to the caller. Only the
// Public text and the Kind cross the wire; Err is kept for logs.
type Error struct {
	Kind   Kind
	Public string
	// RetryAfter, for KindExhausted, says when the caller may try again.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Public + ": " + e.Err.Error()
	}
	return e.Public
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind whose public text is the
// formatted message. Use it only for text a client may read.
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Public: fmt.Sprintf(format, args...)}
}

// Exhausted returns a KindExhausted error that tells the caller when to retry.
func Exhausted(retryAfter time.Duration, format string, args ...any) error {
	return &Error{Kind: KindExhausted, Public: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// KindOf returns the kind of the first *Error in err's chain, or KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
