package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/internal/testbin"
)

// valiseBinary builds the real valise CLI once per test run.
func valiseBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the valise CLI; skipped with -short")
	}
	path := testbin.Path(t, "valise")
	if err := os.MkdirAll(cliHome(path), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// cliHome is the HOME of the valise binary at bin: a directory beside it.
func cliHome(bin string) string { return filepath.Join(filepath.Dir(bin), "home") }

// cliTimeout bounds one run of the CLI; the commands that wait (recv) are
// bounded far lower by their own --timeout.
const cliTimeout = 2 * time.Minute

// cliResult is what one run of the CLI printed and how it exited.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cliEnv is the environment of the CLI at bin: no VALISE_ variables, and
// a HOME of its own (next to the binary) so that a missing --state never
// touches a real ~/.valise.
func cliEnv(bin string) []string {
	return append(childEnv(), "HOME="+cliHome(bin))
}

// runValise runs the valise binary with args and stdin, as a person would
// from a shell.
func runValise(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	bin := valiseBinary(t)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cliEnv(bin)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("valise %q did not finish within %v\nstdout:\n%s\nstderr:\n%s", args, cliTimeout, out.String(), errb.String())
	}
	res := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("valise %q: %v", args, err)
	}
	// The transcript, shown with -v or when the test fails.
	t.Logf("$ valise %s\n%v", strings.Join(args, " "), res)
	return res
}

// mustValise runs the CLI and fails the test unless it exits 0.
func mustValise(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	res := runValise(t, stdin, args...)
	if res.code != 0 {
		t.Fatalf("valise %q: got %v; want exit 0", args, res)
	}
	return res
}

// cliMessage is one line of "recv --json".
type cliMessage struct {
	ID       string `json:"id"`
	From     string `json:"from"`
	Device   string `json:"device"`
	To       string `json:"to"`
	Time     string `json:"time"`
	Text     string `json:"text"`
	Received string `json:"received"`
}

// cliRecv runs "recv --json" on state (with extra global flags) and
// returns the messages it printed.
func cliRecv(t *testing.T, state, timeout string, extra ...string) []cliMessage {
	t.Helper()
	args := append([]string{"--state", state}, extra...)
	args = append(args, "recv", "--json", "--timeout", timeout)
	res := mustValise(t, "", args...)
	var msgs []cliMessage
	for line := range strings.Lines(res.stdout) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m cliMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("recv --json printed a line that is not JSON: %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// cliTexts returns the texts of msgs.
func cliTexts(msgs []cliMessage) []string {
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m.Text)
	}
	return texts
}

// wantCLITexts checks that msgs are exactly the texts want, in order.
func wantCLITexts(t *testing.T, who string, msgs []cliMessage, want ...string) {
	t.Helper()
	got := cliTexts(msgs)
	if !slices.Equal(got, want) {
		t.Fatalf("%s received %q; want %q", who, got, want)
	}
}

var cliDeviceRE = regexp.MustCompile(`^logged in as (\S+), device (\S+)\n$`)

// cliLogin logs user in with password on stdin into the state directory
// state, with extra global flags, and returns the new device's id.
func cliLogin(t *testing.T, n *testNode, state, user, password string, extra ...string) string {
	t.Helper()
	args := append([]string{"--state", state}, extra...)
	args = append(args, "login", "--server", n.ready.Client, "--ca", filepath.Join(n.dir, "ca.crt"),
		"--server-name", n.cfg.Node.Name, "--user", user, "--password-stdin")
	res := mustValise(t, password+"\n", args...)
	m := cliDeviceRE.FindStringSubmatch(res.stdout)
	if m == nil || m[1] != user {
		t.Fatalf("login printed %q; want \"logged in as %s, device ID\"", res.stdout, user)
	}
	return m[2]
}

// checkCLIStatePrivate checks that the state directory and every
// directory in it are 0700 and every file 0600.
func checkCLIStatePrivate(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else if !fi.Mode().IsRegular() {
			t.Errorf("%s is not a regular file (%v)", path, fi.Mode())
			return nil
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o; want %04o", path, got, want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Errorf("state directory %s holds no files", dir)
	}
}

// cliFilesWith returns the files under dir whose contents include secret.
func cliFilesWith(t *testing.T, dir string, secret []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, secret) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// cliFileNames lists the names of the files directly in dir.
func cliFileNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

var cliFingerprintRE = regexp.MustCompile(`^\d{5}( \d{5}){11}$`)

// cliFingerprint runs "fingerprint user" on state and checks its form.
func cliFingerprint(t *testing.T, state, user string) string {
	t.Helper()
	res := mustValise(t, "", "--state", state, "fingerprint", user)
	fp := strings.TrimSuffix(res.stdout, "\n")
	if !cliFingerprintRE.MatchString(fp) {
		t.Fatalf("fingerprint %s in %s printed %q; want 12 groups of 5 digits", user, state, res.stdout)
	}
	return fp
}

// TestValiseCLI drives the real valise binary against a real node, as
// two people with several devices would: log in, send and receive,
// compare and verify safety numbers, notice a new device, seal the keys
// with a passphrase, and log a device out.
func TestValiseCLI(t *testing.T) {
	valiseBinary(t)
	n := startNode(t, "sqlite", nil)
	const (
		alicePassword = "alice-cli-password-7f3e"
		bobPassword   = "bob-cli-password-91ac"
		passphrase    = "a2 passphrase 5d1b, not on argv"
		alice         = "alice@localhost"
		bob           = "bob@localhost"
	)
	root := t.TempDir()
	var (
		stateA1 = filepath.Join(root, "alice-1")
		stateA2 = filepath.Join(root, "alice-2")
		stateB  = filepath.Join(root, "bob")
		stateB2 = filepath.Join(root, "bob-2")
		ppFile  = filepath.Join(root, "passphrase")
	)
	var aliceDev, bobDev, bob2Dev, alice2Dev string
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("login", func(t *testing.T) {
		n.createUser(t, "alice", alicePassword)
		n.createUser(t, "bob", bobPassword)

		// A password on the command line is refused before anything is
		// done, and never echoed.
		refused := filepath.Join(root, "refused")
		for _, pw := range [][]string{{"--password", alicePassword}, {"--password=" + alicePassword}} {
			args := append([]string{"--state", refused, "login", "--server", n.ready.Client, "--ca", filepath.Join(n.dir, "ca.crt"),
				"--server-name", "localhost", "--user", alice}, pw...)
			res := runValise(t, "", args...)
			if res.code != 2 {
				t.Errorf("login %s: got %v; want exit 2", pw[0], res)
			}
			if strings.Contains(res.stdout+res.stderr, alicePassword) {
				t.Errorf("login %s echoed the password: %v", pw[0], res)
			}
		}
		if _, err := os.Stat(refused); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused login created its state directory (stat: %v)", err)
		}

		// Without --server-name the node's certificate (issued for the
		// node's name, not the loopback address) does not verify: a
		// clean failure that leaves no state behind.
		noName := filepath.Join(root, "no-server-name")
		res := runValise(t, alicePassword+"\n", "--state", noName, "login", "--server", n.ready.Client,
			"--ca", filepath.Join(n.dir, "ca.crt"), "--user", alice, "--password-stdin")
		if res.code != 1 || res.stderr == "" {
			t.Errorf("login without --server-name: got %v; want exit 1 and a message", res)
		}
		if _, err := os.Stat(filepath.Join(noName, "state.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed login left a state.json (stat: %v)", err)
		}

		aliceDev = cliLogin(t, n, stateA1, alice, alicePassword)
		bobDev = cliLogin(t, n, stateB, bob, bobPassword)
		if aliceDev == bobDev {
			t.Fatalf("alice and bob got the same device id %q", aliceDev)
		}
		// Logging in again into a used state directory is refused.
		res = runValise(t, alicePassword+"\n", "--state", stateA1, "login", "--server", n.ready.Client,
			"--ca", filepath.Join(n.dir, "ca.crt"), "--server-name", "localhost", "--user", alice, "--password-stdin")
		if res.code != 1 || !strings.Contains(res.stderr, "already") {
			t.Errorf("second login into %s: got %v; want exit 1 and \"already\"", stateA1, res)
		}
		for _, dir := range []string{stateA1, stateB} {
			checkCLIStatePrivate(t, dir)
		}
		// The unsealed state keeps its secrets in secrets.json: the
		// access token is there (so the scans below would see a secret in
		// the clear) but never in the node's logs.
		b, err := os.ReadFile(filepath.Join(stateA1, "secrets.json"))
		if err != nil {
			t.Fatal(err)
		}
		var sec struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(b, &sec); err != nil || len(sec.AccessToken) < 16 {
			t.Fatalf("secrets.json of %s: token %q, err %v; want a token", stateA1, sec.AccessToken, err)
		}
		if strings.Contains(n.logs.String(), sec.AccessToken) {
			t.Error("alice's access token reached the node's logs")
		}
		// The device shows up as the current one.
		res = mustValise(t, "", "--state", stateA1, "devices")
		if !strings.Contains(res.stdout, aliceDev) || !strings.Contains(res.stdout, "(this device)") {
			t.Errorf("devices in %s: got %v; want %s marked as this device", stateA1, res, aliceDev)
		}
	})

	step("send and recv", func(t *testing.T) {
		res := mustValise(t, "", "--state", stateA1, "send", bob, "hello bob")
		if !strings.Contains(res.stdout, "sent to 1 device(s) of "+bob) {
			t.Errorf("send stdout %q; want \"sent to 1 device(s) of %s\"", res.stdout, bob)
		}
		if res.stderr != "" {
			t.Errorf("send printed on stderr: %q", res.stderr)
		}
		before := time.Now().Add(-time.Minute)
		msgs := cliRecv(t, stateB, "5s")
		wantCLITexts(t, "bob", msgs, "hello bob")
		m := msgs[0]
		if m.From != alice || m.Device != aliceDev || m.To != bob {
			t.Errorf("recv: from %q device %q to %q; want %q %q %q", m.From, m.Device, m.To, alice, aliceDev, bob)
		}
		if len(m.ID) != 32 {
			t.Errorf("recv: id %q; want 32 hex digits", m.ID)
		}
		sent, err := time.Parse(time.RFC3339, m.Time)
		if err != nil {
			t.Errorf("recv: time %q does not parse as RFC 3339: %v", m.Time, err)
		} else if sent.Before(before) || sent.After(time.Now().Add(time.Minute)) {
			t.Errorf("recv: time %v; want about now", sent)
		}
		if _, err := time.Parse(time.RFC3339, m.Received); err != nil {
			t.Errorf("recv: received %q does not parse as RFC 3339: %v", m.Received, err)
		}
		// The message was acknowledged: a second recv finds nothing.
		if again := cliRecv(t, stateB, "2s"); len(again) != 0 {
			t.Errorf("second recv got %q; want nothing (acknowledged)", cliTexts(again))
		}
		res = mustValise(t, "", "--state", stateB, "history", alice)
		if !strings.Contains(res.stdout, "hello bob") || !strings.Contains(res.stdout, alice+" → "+bob) {
			t.Errorf("history %s in bob's state: got %v; want the message from %s to %s", alice, res, alice, bob)
		}
		// Alice's own history has the sent message too.
		res = mustValise(t, "", "--state", stateA1, "history", bob)
		if !strings.Contains(res.stdout, "hello bob") {
			t.Errorf("history %s in alice's state: got %v; want the sent message", bob, res)
		}
	})

	step("text from stdin", func(t *testing.T) {
		mustValise(t, "reply from stdin\n", "--state", stateB, "send", alice)
		msgs := cliRecv(t, stateA1, "5s")
		wantCLITexts(t, "alice", msgs, "reply from stdin")
		if m := msgs[0]; m.From != bob || m.Device != bobDev {
			t.Errorf("recv: from %q device %q; want %q %q", m.From, m.Device, bob, bobDev)
		}
	})

	step("fingerprints", func(t *testing.T) {
		fromAlice := cliFingerprint(t, stateA1, bob)
		fromBob := cliFingerprint(t, stateB, bob)
		if fromAlice != fromBob {
			t.Fatalf("alice sees bob's safety number %q, bob sees %q; want the same", fromAlice, fromBob)
		}
		// A wrong safety number: exit 1, a warning, nothing verified.
		wrong := []byte(fromAlice)
		wrong[0] = '0' + (wrong[0]-'0'+1)%10
		res := runValise(t, "", "--state", stateA1, "verify", bob, string(wrong))
		if res.code != 1 || !strings.Contains(res.stderr, "WARNING") {
			t.Errorf("verify with a wrong fingerprint: got %v; want exit 1 and a WARNING", res)
		}
		res = mustValise(t, "", "--state", stateA1, "devices", bob)
		if strings.Contains(res.stdout, "verified") {
			t.Errorf("after a failed verify, devices %s shows %q; want nothing verified", bob, res.stdout)
		}
		// The right one, as one argument.
		mustValise(t, "", "--state", stateA1, "verify", bob, fromBob)
		res = mustValise(t, "", "--state", stateA1, "devices", bob)
		if !strings.Contains(res.stdout, bobDev) || !strings.Contains(res.stdout, "verified") {
			t.Errorf("devices %s after verify: got %v; want %s verified", bob, res, bobDev)
		}
		// The groups as separate arguments work too (and keep it verified).
		mustValise(t, "", append([]string{"--state", stateA1, "verify", bob}, strings.Fields(fromBob)...)...)
	})

	step("new device of a verified user", func(t *testing.T) {
		bob2Dev = cliLogin(t, n, stateB2, bob, bobPassword)
		checkCLIStatePrivate(t, stateB2)
		res := mustValise(t, "", "--state", stateA1, "send", bob, "to both")
		if !strings.Contains(res.stderr, "WARNING") || !strings.Contains(res.stderr, bob2Dev) {
			t.Errorf("send to %s after a new device: got %v; want a WARNING naming %s", bob, res, bob2Dev)
		}
		if strings.Contains(res.stderr, bobDev) {
			t.Errorf("send warned about the verified device %s: %q", bobDev, res.stderr)
		}
		if !strings.Contains(res.stdout, "sent to 2 device(s) of "+bob) {
			t.Errorf("send stdout %q; want \"sent to 2 device(s) of %s\"", res.stdout, bob)
		}
		for _, st := range []string{stateB, stateB2} {
			msgs := cliRecv(t, st, "5s")
			wantCLITexts(t, st, msgs, "to both")
			if m := msgs[0]; m.From != alice || m.Device != aliceDev {
				t.Errorf("%s: from %q device %q; want %q %q", st, m.From, m.Device, alice, aliceDev)
			}
		}
		// The new device is listed, pinned but not verified.
		res = mustValise(t, "", "--state", stateA1, "devices", bob)
		if !strings.Contains(res.stdout, bob2Dev) {
			t.Errorf("devices %s: got %v; want %s listed", bob, res, bob2Dev)
		}
		// Bob's two devices agree on the new safety number, which alice
		// sees too.
		fpA := cliFingerprint(t, stateA1, bob)
		if fpB2 := cliFingerprint(t, stateB2, bob); fpA != fpB2 {
			t.Errorf("alice sees %q, bob's new device %q; want the same", fpA, fpB2)
		}
	})

	step("passphrase", func(t *testing.T) {
		if err := os.WriteFile(ppFile, []byte(passphrase+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		alice2Dev = cliLogin(t, n, stateA2, alice, alicePassword, "--passphrase-file", ppFile)
		checkCLIStatePrivate(t, stateA2)
		res := mustValise(t, "", "--state", stateA1, "devices")
		if !strings.Contains(res.stdout, alice2Dev) || !strings.Contains(res.stdout, aliceDev) {
			t.Errorf("alice's devices: got %v; want %s and %s", res, aliceDev, alice2Dev)
		}
		names := cliFileNames(t, stateA2)
		for _, name := range names {
			if name == "secrets.json" {
				t.Errorf("a state sealed with a passphrase has a secrets.json: %q", names)
			}
		}
		if _, err := os.Stat(filepath.Join(stateA2, "secrets.enc")); err != nil {
			t.Errorf("no sealed secrets.enc in %s (files %q): %v", stateA2, names, err)
		}
		for _, secret := range []string{`"access_token"`, `"identity_seed"`, passphrase, alicePassword} {
			if hits := cliFilesWith(t, stateA2, []byte(secret)); len(hits) != 0 {
				t.Errorf("%q is in the clear in %q", secret, hits)
			}
		}
		// A control: the scan does find the clear secrets of the unsealed
		// state.
		if hits := cliFilesWith(t, stateA1, []byte(`"identity_seed"`)); len(hits) != 1 {
			t.Errorf("control: the identity seed field is in %q of the unsealed state; want secrets.json only", hits)
		}

		res = mustValise(t, "", "--state", stateB, "send", alice, "for both alices")
		if !strings.Contains(res.stdout, "sent to 2 device(s) of "+alice) {
			t.Errorf("send stdout %q; want \"sent to 2 device(s) of %s\"", res.stdout, alice)
		}
		// Without the passphrase, or with a wrong one, the sealed state
		// does not open, and nothing is received.
		res = runValise(t, "", "--state", stateA2, "recv", "--timeout", "2s")
		if res.code != 1 || !strings.Contains(res.stderr, "--passphrase-file") {
			t.Errorf("recv without the passphrase: got %v; want exit 1 and a hint at --passphrase-file", res)
		}
		wrongFile := filepath.Join(root, "wrong-passphrase")
		if err := os.WriteFile(wrongFile, []byte("not the passphrase\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		res = runValise(t, "", "--state", stateA2, "--passphrase-file", wrongFile, "recv", "--timeout", "2s")
		if res.code != 1 || !strings.Contains(res.stderr, "passphrase") || res.stdout != "" {
			t.Errorf("recv with a wrong passphrase: got %v; want exit 1 and a message about the passphrase", res)
		}
		// An unsealed state refuses a passphrase.
		res = runValise(t, "", "--state", stateA1, "--passphrase-file", ppFile, "history")
		if res.code != 1 || !strings.Contains(res.stderr, "passphrase") {
			t.Errorf("history of the unsealed state with a passphrase: got %v; want exit 1", res)
		}
		for _, st := range []struct {
			dir   string
			extra []string
		}{{stateA2, []string{"--passphrase-file", ppFile}}, {stateA1, nil}} {
			msgs := cliRecv(t, st.dir, "5s", st.extra...)
			wantCLITexts(t, st.dir, msgs, "for both alices")
			if m := msgs[0]; m.From != bob || m.Device != bobDev || m.To != alice {
				t.Errorf("%s: from %q device %q to %q; want %q %q %q", st.dir, m.From, m.Device, m.To, bob, bobDev, alice)
			}
		}
		// Still nothing in the clear after the state was opened and
		// written to.
		for _, secret := range []string{`"access_token"`, `"identity_seed"`, passphrase} {
			if hits := cliFilesWith(t, stateA2, []byte(secret)); len(hits) != 0 {
				t.Errorf("after recv, %q is in the clear in %q", secret, hits)
			}
		}
	})

	step("logout", func(t *testing.T) {
		res := mustValise(t, "", "--state", stateB2, "logout")
		if !strings.Contains(res.stdout, bob2Dev) {
			t.Errorf("logout stdout %q; want the device %s", res.stdout, bob2Dev)
		}
		if _, err := os.Stat(filepath.Join(stateB2, "secrets.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("secrets.json survived the logout (stat: %v)", err)
		}
		res = runValise(t, "", "--state", stateB2, "recv", "--timeout", "2s")
		if res.code != 1 || !strings.Contains(res.stderr, "valise login") {
			t.Errorf("recv after logout: got %v; want exit 1 and a hint to log in", res)
		}
		res = mustValise(t, "", "--state", stateA1, "send", bob, "after logout")
		if !strings.Contains(res.stdout, "sent to 1 device(s) of "+bob) {
			t.Errorf("send after bob's logout: stdout %q; want \"sent to 1 device(s) of %s\"", res.stdout, bob)
		}
		if strings.Contains(res.stdout+res.stderr, bob2Dev) {
			t.Errorf("send after bob's logout mentions the revoked device %s: %v", bob2Dev, res)
		}
		msgs := cliRecv(t, stateB, "5s")
		wantCLITexts(t, "bob", msgs, "after logout")
		res = mustValise(t, "", "--state", stateA1, "devices", bob)
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		if len(lines) != 2 || !strings.Contains(lines[1], bobDev) || strings.Contains(res.stdout, bob2Dev) {
			t.Errorf("devices %s after the logout: got %v; want only %s", bob, res, bobDev)
		}
		// Alice's second device got its copy of what alice sent.
		msgs = cliRecv(t, stateA2, "5s", "--passphrase-file", ppFile)
		wantCLITexts(t, "alice's second device", msgs, "after logout")
		if m := msgs[0]; m.From != alice || m.Device != aliceDev || m.To != bob {
			t.Errorf("copy to alice's second device: from %q device %q to %q; want %q %q %q", m.From, m.Device, m.To, alice, aliceDev, bob)
		}
	})

	step("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"no command", []string{"--state", stateA1}},
			{"unknown command", []string{"--state", stateA1, "frobnicate"}},
			{"unknown flag", []string{"--state", stateA1, "recv", "--bogus"}},
			{"send without a user", []string{"--state", stateA1, "send"}},
			{"verify without a fingerprint", []string{"--state", stateA1, "verify", bob}},
			{"fingerprint of two users", []string{"--state", stateA1, "fingerprint", alice, bob}},
			{"negative timeout", []string{"--state", stateA1, "recv", "--timeout", "-1s"}},
			{"login without --server", []string{"--state", filepath.Join(root, "unused"), "login", "--user", alice, "--password-stdin"}},
			{"passphrase on argv", []string{"--state", stateA2, "--passphrase=" + passphrase, "recv"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := runValise(t, alicePassword+"\n", tc.args...)
				if res.code != 2 || !strings.Contains(res.stderr, "valise help") {
					t.Errorf("valise %q: got %v; want exit 2 and a pointer to 'valise help'", tc.args, res)
				}
				if strings.Contains(res.stdout+res.stderr, passphrase) {
					t.Errorf("valise %q echoed the passphrase", tc.args)
				}
			})
		}
		res := mustValise(t, "", "help")
		if !strings.Contains(res.stdout, "Usage: valise") {
			t.Errorf("help: got %v; want the usage", res)
		}
	})

	step("no secrets leaked", func(t *testing.T) {
		logs := n.logs.String()
		for _, secret := range []string{alicePassword, bobPassword, passphrase} {
			if strings.Contains(logs, secret) {
				t.Errorf("%q reached the node's logs", secret)
			}
			for _, dir := range []string{stateA1, stateA2, stateB, stateB2} {
				if hits := cliFilesWith(t, dir, []byte(secret)); len(hits) != 0 {
					t.Errorf("%q is written in %q", secret, hits)
				}
			}
		}
		for _, dir := range []string{stateA1, stateA2, stateB, stateB2} {
			checkCLIStatePrivate(t, dir)
		}
	})
}
