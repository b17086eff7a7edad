// Package testbin builds the project's commands for tests that run them
// as processes (the real valised, valisectl, valise and valise-bench
// binaries): each command at most once per test binary run, into one
// temporary directory that every user may read (tests may run a binary
// as another user), removed by Main. Only tests import it.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// module is the import path the commands are under.
const module = "github.com/valise-im/valise/cmd/"

// cache is the one directory of this test binary run and what was built
// into it; a build that failed stays failed.
var cache struct {
	mu    sync.Mutex
	dir   string
	err   error
	built map[string]build
}

type build struct {
	err error
	out []byte
}

// Path returns the path of the freshly built command cmd ("valised",
// "valisectl", "valise", "valise-bench"), building it on first use. Commands
// built by one test binary share a directory, so one finds another beside
// itself. It fails t if the build fails.
func Path(t testing.TB, cmd string) string {
	t.Helper()
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if cache.dir == "" && cache.err == nil {
		cache.dir, cache.err = os.MkdirTemp("", "valise-testbin")
		if cache.err == nil {
			cache.err = os.Chmod(cache.dir, 0o755)
		}
		cache.built = map[string]build{}
	}
	if cache.err != nil {
		t.Fatalf("testbin: %v", cache.err)
	}
	path := filepath.Join(cache.dir, cmd)
	b, ok := cache.built[cmd]
	if !ok {
		b.out, b.err = exec.Command("go", "build", "-o", path, module+cmd).CombinedOutput()
		cache.built[cmd] = b
	}
	if b.err != nil {
		t.Fatalf("building %s: %v\n%s", cmd, b.err, b.out)
	}
	return path
}

// Main runs the tests and then removes what Path built; a package whose
// tests use Path calls it from TestMain: os.Exit(testbin.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if cache.dir != "" {
		os.RemoveAll(cache.dir)
	}
	return code
}
