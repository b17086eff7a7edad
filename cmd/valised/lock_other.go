//go:build !unix

package main

// lockDataDir is a no-op where flock is not available.
func lockDataDir(string) (func(), error) { return func() {}, nil }

// chownLikeDir does nothing where file ownership is not unix's.
func chownLikeDir(string, string) error { return nil }
