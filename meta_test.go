package valise_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/valise-im/valise"

// packages returns every Go package directory of the module with its
// non-test files parsed (imports and comments only).
func packages(t *testing.T) map[string][]string {
	t.Helper()
	dirs := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "valise-dev") && path != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestPackageDocs checks that every package has exactly one package doc
// comment.
func TestPackageDocs(t *testing.T) {
	for dir, files := range packages(t) {
		docs := 0
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && !strings.HasSuffix(f, ".pb.go") {
				docs++
			}
		}
		if docs != 1 {
			t.Errorf("package %s has %d package doc comments, want 1", dir, docs)
		}
	}
}

// forbidden maps a package (prefix) to the module packages it must not
// import, following the dependency table of DESIGN.md.
var forbidden = []struct {
	pkg  string
	deny []string
}{
	{".", []string{module + "/"}},
	{"storage", []string{module + "/server", module + "/federation", module + "/proto", module + "/internal", module + "/cmd", module + "/client"}},
	{"server", []string{module + "/storage/sqlite", module + "/storage/postgres", module + "/internal", module + "/cmd", module + "/federation"}},
	{"internal/pki", []string{module + "/server", module + "/storage"}},
	{"internal/ratelimit", []string{module + "/"}},
	{"internal/grpcerr", []string{module + "/"}},
	{"proto", []string{module + "/"}},
	{"cmd/valisectl", []string{module + "/server", module + "/storage", module + "/internal/backend"}},
	{"client", []string{module + "/server", module + "/storage", module + "/internal", module + "/cmd", module + "/federation"}},
	{"client/e2ee", []string{module + "/"}},
	{"federation", []string{module + "/server", module + "/internal", module + "/cmd", module + "/client"}},
	{"cmd/valise", []string{module + "/server", module + "/storage", module + "/internal/backend", module + "/internal/config", module + "/internal/pki"}},
}

// shared are the internal packages any layer may use: leaves that import
// nothing of Valise but the domain vocabulary.
var shared = map[string]bool{
	module + "/internal/ratelimit": true,
	module + "/internal/grpcerr":   true,
}

// TestImportRules fails when a package imports what the design forbids.
func TestImportRules(t *testing.T) {
	for dir, files := range packages(t) {
		for _, rule := range forbidden {
			if !(dir == rule.pkg || (rule.pkg != "." && strings.HasPrefix(dir+"/", rule.pkg+"/"))) {
				continue
			}
			for _, f := range files {
				af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
				if err != nil {
					t.Fatal(err)
				}
				for _, imp := range af.Imports {
					path, _ := strconv.Unquote(imp.Path.Value)
					for _, d := range rule.deny {
						if shared[path] {
							continue
						}
						if strings.HasPrefix(path, d) && !(rule.pkg == "storage" && strings.HasPrefix(path, module+"/storage")) {
							// storage/* may import storage; proto may import proto.
							if rule.pkg == "proto" && strings.HasPrefix(path, module+"/proto") {
								continue
							}
							t.Errorf("%s imports %s, which %s must not", f, path, rule.pkg)
						}
					}
					if rule.pkg == "." && !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
						continue
					}
					if rule.pkg == "." && strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
						t.Errorf("%s imports %s: the domain package imports only the standard library", f, path)
					}
				}
			}
		}
	}
}

// TestNoHugeFiles keeps files small enough to read.
func TestNoHugeFiles(t *testing.T) {
	for _, files := range packages(t) {
		for _, f := range files {
			if strings.HasSuffix(f, ".pb.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), "\n"); n > 800 {
				t.Errorf("%s has %d lines; split it by responsibility", f, n)
			}
		}
	}
}
