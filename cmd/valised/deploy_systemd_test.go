package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// deployDir is the repository's deploy/ directory, seen from this package.
var deployDir = filepath.Join("..", "..", "deploy")

// unitFile is a systemd unit: section → key → values in order (a key may
// repeat).
type unitFile map[string]map[string][]string

// parseUnit reads a systemd unit file (no line continuations).
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: %q is not KEY=VALUE inside a section", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// needTool returns the path of a tool a deploy check runs. Without it the
// test skips, except in CI (CI=true), where it fails: .ci/run installs it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (Debian package %s): CI must run this check", name, pkg)
		}
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
	return p
}

// runTool runs a command and fails the test, with its output, unless it
// exits 0.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSystemdUnit checks deploy/systemd: the unit holds the hardening the
// issue lists, writes only the data directory the sysusers and tmpfiles
// files create for its user, passes `systemd-analyze verify` cleanly (with
// the real valised at ExecStart's path) and scores OK (at most 1.5) in
// `systemd-analyze security --offline`, and the tmpfiles and sysusers
// files create the user and a 0700 data directory it owns.
func TestSystemdUnit(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join(deployDir, "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(dir, "valised.service")
	u := parseUnit(t, unitPath)
	svc := u["Service"]
	if svc == nil {
		t.Fatal("valised.service has no [Service] section")
	}
	const bin, data = "/usr/local/bin/valised", "/var/lib/valise"
	for key, want := range map[string][]string{
		"User":                    {"valise"},
		"Group":                   {"valise"},
		"ExecStart":               {bin + " serve --data " + data},
		"ExecStartPre":            {bin + " check --data " + data},
		"ExecReload":              {"/bin/kill -HUP $MAINPID"},
		"Restart":                 {"on-failure"},
		"NoNewPrivileges":         {"yes"},
		"ProtectSystem":           {"strict"},
		"ProtectHome":             {"yes"},
		"PrivateTmp":              {"yes"},
		"CapabilityBoundingSet":   {""},
		"AmbientCapabilities":     {""},
		"ReadWritePaths":          {data},
		"SystemCallFilter":        {"@system-service", "~@privileged @resources"},
		"SystemCallArchitectures": {"native"},
		"UMask":                   {"0077"},
	} {
		if got := svc[key]; !slices.Equal(got, want) {
			t.Errorf("[Service] %s = %q, want %q", key, got, want)
		}
	}
	for _, key := range []string{"ReadOnlyPaths", "BindPaths", "StateDirectory", "DynamicUser"} {
		if v, ok := svc[key]; ok {
			t.Errorf("[Service] %s = %q: the data directory must be the only writable path", key, v)
		}
	}
	if n := svc["LimitNOFILE"]; len(n) != 1 || len(n[0]) < 5 {
		t.Errorf("LimitNOFILE = %q, want at least 10000 descriptors for many clients", n)
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy = %q, want multi-user.target", got)
	}

	// The sysusers and tmpfiles files agree with the unit.
	sysusers, err := os.ReadFile(filepath.Join(dir, "valise.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	tmpfiles, err := os.ReadFile(filepath.Join(dir, "valise.tmpfiles"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sysusers), "\nu valise - ") {
		t.Errorf("valise.sysusers does not declare the user valise:\n%s", sysusers)
	}
	if !strings.Contains(string(tmpfiles), "\nd "+data+" 0700 valise valise -\n") {
		t.Errorf("valise.tmpfiles does not create %s 0700 for valise:\n%s", data, tmpfiles)
	}

	analyze := needTool(t, "systemd-analyze", "systemd")
	// verify wants ExecStart's binary to exist: check a copy of the unit
	// whose paths name a freshly built valised. Any warning fails.
	tmp := t.TempDir()
	valised := valisedBinary(t)
	orig, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(tmp, "valised.service")
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(orig, []byte(bin), []byte(valised)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := runTool(t, analyze, "verify", copyPath); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify complained:\n%s", out)
	}
	out := runTool(t, analyze, "security", "--offline=true", "--threshold=15", "--no-pager", copyPath)
	t.Log(lastLine(out))

	// The unit's ExecStartPre accepts a node made by init.
	node := newNodeDir(t, "sqlite")
	pre := strings.Fields(strings.ReplaceAll(svc["ExecStartPre"][0], data, node))
	runTool(t, valised, pre[1:]...)

	// sysusers then tmpfiles in an empty root: the user, then its data
	// directory, 0700.
	sysusersBin := needTool(t, "systemd-sysusers", "systemd")
	tmpfilesBin := needTool(t, "systemd-tmpfiles", "systemd")
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runTool(t, sysusersBin, "--root="+root, filepath.Join(dir, "valise.sysusers"))
	runTool(t, tmpfilesBin, "--root="+root, "--create", filepath.Join(dir, "valise.tmpfiles"))
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var uid string
	for line := range strings.Lines(string(passwd)) {
		if f := strings.Split(line, ":"); len(f) > 6 && f[0] == "valise" {
			uid = f[2]
			if shell := strings.TrimSpace(f[6]); !strings.HasSuffix(shell, "nologin") {
				t.Errorf("valise's shell = %q, want nologin", shell)
			}
		}
	}
	if uid == "" {
		t.Fatalf("systemd-sysusers made no valise user:\n%s", passwd)
	}
	fi, err := os.Stat(filepath.Join(root, data))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o700 || !fi.IsDir() || strconv.FormatUint(uint64(st.Uid), 10) != uid {
		t.Errorf("%s: mode %v uid %d, want a 0700 directory owned by valise (uid %s)", data, fi.Mode(), st.Uid, uid)
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
