package main

import (
	"fmt"
	"syscall"
)

// wantNoFile is the open file limit the tool asks for: 20,000 idle
// devices hold a TLS connection and two lock files each in the tool, and
// a connection each in the node, which inherits the limit.
const wantNoFile = 1 << 20

// raiseNoFile raises RLIMIT_NOFILE, soft and hard, towards wantNoFile
// (the hard limit only as far as the process may: root may raise it up
// to fs.nr_open), and returns the soft limit in force. The nodes the tool
// starts inherit it.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= wantNoFile {
		return lim.Cur, nil
	}
	want := syscall.Rlimit{Cur: wantNoFile, Max: max(lim.Max, wantNoFile)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return want.Cur, nil
	}
	// Not allowed above the hard limit: take all of it.
	want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return lim.Cur, fmt.Errorf("setrlimit: %w", err)
	}
	return want.Cur, nil
}
