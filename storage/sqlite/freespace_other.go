//go:build !unix

package sqlite

import "errors"

// statfsFree is unknown where statfs is not available: the backup goes
// ahead, and VACUUM INTO fails cleanly on a full disk.
func statfsFree(string) (uint64, error) { return 0, errors.ErrUnsupported }
