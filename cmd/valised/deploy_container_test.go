package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Containerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN…
	args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	from  string // the FROM arguments
	name  string // after AS, or ""
	instr []instruction
}

// parseContainerfile splits a Containerfile into its global instructions
// (before the first FROM) and its stages.
func parseContainerfile(t *testing.T, path string) ([]instruction, []stage) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var all []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		all = append(all, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() != 0 {
		t.Fatalf("%s: a continuation runs past the end", path)
	}
	var global []instruction
	var stages []stage
	for _, in := range all {
		if in.cmd == "FROM" {
			s := stage{from: in.args}
			if f := strings.Fields(in.args); len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.from, s.name = f[0], f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			global = append(global, in)
			continue
		}
		stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, in)
	}
	return global, stages
}

// shellWords splits a simple shell command: words separated by blanks,
// with double-quoted parts (no escapes, no expansions: the build command
// uses none).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case strings.ContainsRune(`$'\;&|<>`+"`", r):
			t.Fatalf("build command %q uses shell syntax %q the test does not reproduce", s, r)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("build command %q has an open quote", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// execForm decodes an exec-form (JSON array) argument list, or fails.
func execForm(t *testing.T, in instruction, args string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil || len(v) == 0 {
		t.Fatalf("line %d: %s %s is not in exec form (a JSON array): the image has no shell", in.line, in.cmd, args)
	}
	return v
}

// TestContainerfile checks deploy/container/Containerfile's invariants (a
// Go build stage matching go.mod, a static CGO_ENABLED=0 build, a final
// distroless static image with CA certificates, a non-root numeric user,
// no shell needed: no RUN and exec-form commands only, a HEALTHCHECK by
// `valised health`), then builds the binaries exactly as the build stage
// does and checks that they are static ELF executables, and runs the
// image's HEALTHCHECK command with that valised against a real node.
func TestContainerfile(t *testing.T) {
	path := filepath.Join(deployDir, "container", "Containerfile")
	global, stages := parseContainerfile(t, path)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}

	// The Go version is go.mod's.
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "GO_VERSION=" + string(m[1]); !slices.ContainsFunc(global, func(in instruction) bool { return in.cmd == "ARG" && in.args == want }) {
		t.Errorf("no global ARG %s (go.mod's version)", want)
	}

	// The build stage: a static build with the Go toolchain.
	var build *stage
	for i := range stages {
		if stages[i].name == "build" {
			build = &stages[i]
		}
	}
	if build == nil || !strings.Contains(build.from, "golang:${GO_VERSION}") {
		t.Fatalf("no stage `build` FROM golang:${GO_VERSION}")
	}
	var goBuild []string
	for _, in := range build.instr {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			if goBuild != nil {
				t.Fatal("the build stage has more than one go build")
			}
			goBuild = shellWords(t, in.args)
		}
	}
	if goBuild == nil || goBuild[0] != "CGO_ENABLED=0" {
		t.Fatalf("the build stage's go build = %q, want it to start CGO_ENABLED=0", goBuild)
	}

	// The final stage: minimal, non-root, no shell needed.
	final := stages[len(stages)-1]
	if final.name != "" || !strings.HasPrefix(final.from, "gcr.io/distroless/static-") {
		t.Errorf("final stage FROM %q AS %q, want an unnamed distroless static image (CA certificates, no shell)", final.from, final.name)
	}
	byCmd := map[string][]instruction{}
	for _, in := range final.instr {
		byCmd[in.cmd] = append(byCmd[in.cmd], in)
	}
	if r := byCmd["RUN"]; len(r) > 0 {
		t.Errorf("line %d: the final stage runs %q, but its image has no shell", r[0].line, r[0].args)
	}
	if u := byCmd["USER"]; len(u) != 1 || !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(u[0].args) {
		t.Errorf("final stage USER = %v, want one numeric non-root uid:gid", u)
	}
	for _, in := range byCmd["COPY"] {
		if !strings.HasPrefix(in.args, "--from=build ") {
			t.Errorf("line %d: COPY %s: the final stage should take only the build stage's output", in.line, in.args)
		}
	}
	ep := byCmd["ENTRYPOINT"]
	if len(ep) != 1 || !slices.Equal(execForm(t, ep[0], ep[0].args), []string{"/usr/local/bin/valised"}) {
		t.Fatalf("final ENTRYPOINT = %v, want [\"/usr/local/bin/valised\"]", ep)
	}
	if c := byCmd["CMD"]; len(c) != 1 || !slices.Equal(execForm(t, c[0], c[0].args), []string{"serve", "--data", "/var/lib/valise"}) {
		t.Errorf("final CMD = %v, want serve --data /var/lib/valise", c)
	}
	hc := byCmd["HEALTHCHECK"]
	if len(hc) != 1 {
		t.Fatalf("final stage HEALTHCHECK = %v, want one", hc)
	}
	_, check, ok := strings.Cut(hc[0].args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s has no CMD", hc[0].args)
	}
	health := execForm(t, hc[0], check)
	if len(health) < 2 || health[0] != "/usr/local/bin/valised" || health[1] != "health" {
		t.Fatalf("HEALTHCHECK runs %q, want valised health", health)
	}

	// Build as the build stage does, into a temporary /out/.
	// Like /out/ in the build stage, the directory does not exist yet.
	out := filepath.Join(t.TempDir(), "out")
	env := os.Environ()
	args := goBuild
	for len(args) > 0 && strings.Contains(args[0], "=") {
		env = append(env, args[0])
		args = args[1:]
	}
	i := slices.Index(args, "-o")
	if i < 0 || i+1 >= len(args) || args[i+1] != "/out/" {
		t.Fatalf("the build writes to %q, want -o /out/", args)
	}
	args[i+1] = out + "/"
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(goBuild, " "), err, b)
	}
	for _, bin := range []string{"valised", "valisectl"} {
		f, err := elf.Open(filepath.Join(out, bin))
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s has a %v program header: not static", bin, p.Type)
			}
		}
		if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
			t.Errorf("%s has a dynamic section: not static", bin)
		}
		f.Close()
	}

	// The image's health check, run with that binary against a real node
	// whose data directory stands in for /var/lib/valise.
	dir := filepath.Join(t.TempDir(), "node")
	if _, err := initNode(initParams{Dir: dir, Name: "localhost", Client: freeAddr(t), Federation: freeAddr(t), Metrics: "", Health: freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	probe := func() (int, string) {
		args := slices.Clone(health[1:])
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "/var/lib/valise", dir)
		}
		c := exec.Command(filepath.Join(out, "valised"), args...)
		c.Env = childEnv()
		b, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(b)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(b)
	}
	if code, b := probe(); code != 1 {
		t.Errorf("HEALTHCHECK before the node serves = %d (%s), want 1", code, b)
	}
	startNodeIn(t, dir, testConfig(t, dir, nil))
	if code, b := probe(); code != 0 {
		t.Errorf("HEALTHCHECK of a serving node = %d (%s), want 0", code, b)
	}
}
