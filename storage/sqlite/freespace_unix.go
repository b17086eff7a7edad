//go:build unix

package sqlite

import "syscall"

// statfsFree returns the bytes available to an unprivileged process on
// the file system holding dir.
func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
