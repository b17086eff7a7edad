package federation

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/internal/grpcerr"
)

// publicStatus is grpcerr.Public: the status a peer may see, or ok false
// for an error that must be answered as internal.
func publicStatus(err error) (st error, ok bool) { return grpcerr.Public(err) }

// withRetry adds a RetryInfo detail to s.
func withRetry(s *status.Status, d time.Duration) *status.Status { return grpcerr.WithRetry(s, d) }

// exhausted returns a RESOURCE_EXHAUSTED status with RetryInfo d.
func exhausted(d time.Duration, msg string) error {
	return withRetry(status.New(codes.ResourceExhausted, msg), d).Err()
}

// retryDelay returns the RetryInfo delay carried by st, if any.
func retryDelay(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if err := ri.GetRetryDelay().CheckValid(); err != nil {
				return 0, false
			}
			return max(ri.GetRetryDelay().AsDuration(), 0), true
		}
	}
	return 0, false
}
