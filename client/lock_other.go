//go:build !unix

package client

import "os"

// flock is a no-op where flock is not available: processes sharing a state
// directory are then not serialized (one process is still safe).
func flock(*os.File, bool) (func(), error) { return func() {}, nil }

// tryFlock always succeeds where flock is not available.
func tryFlock(*os.File) (bool, error) { return true, nil }
