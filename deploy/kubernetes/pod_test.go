package kubernetes

import (
	"bufio"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/testbin"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// podIdentity is who the container runs as: its user and group, and the
// pod's fsGroup, which owns the mounted Secret and ConfigMap files.
type podIdentity struct{ uid, gid, fsGroup int64 }

func identityOf(t *testing.T, spec *corev1.PodSpec, c *corev1.Container) podIdentity {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	pick := func(what string, ctr, pod *int64) int64 {
		if ctr != nil {
			return *ctr
		}
		if pod != nil {
			return *pod
		}
		t.Fatalf("the pod does not set %s", what)
		return 0
	}
	id := podIdentity{
		uid: pick("runAsUser", sc.RunAsUser, psc.RunAsUser),
		gid: pick("runAsGroup", sc.RunAsGroup, psc.RunAsGroup),
	}
	id.fsGroup = pick("fsGroup", nil, psc.FSGroup)
	return id
}

// materialize lays out under root what the kubelet would mount for c:
// emptyDirs (mode 0777), Secret and ConfigMap items (owned by the
// fsGroup, with their volume's mode) from the given contents. asRoot
// makes the ownership real (chown).
func materialize(t *testing.T, root string, spec *corev1.PodSpec, c *corev1.Container, id podIdentity,
	secrets, configMaps map[string]map[string]string, asRoot bool) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := slices.Clone(c.VolumeMounts)
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i].MountPath) < len(mounts[j].MountPath) })
	host := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	// mkdir creates p with mode; an existing directory (a mount that
	// holds this one) keeps its own.
	mkdir := func(p string, mode fs.FileMode) {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	put := func(p, content string, mode int32) {
		mkdir(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), fs.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, fs.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		if asRoot {
			if err := os.Chown(p, 0, int(id.fsGroup)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range mounts {
		v := vols[m.Name]
		var (
			data     map[string]string
			items    []corev1.KeyToPath
			mode     int32 = 0o644 // the Kubernetes default
			defMode  *int32
			optional *bool
			source   string
		)
		switch {
		case v.EmptyDir != nil:
			mkdir(host(m.MountPath), 0o777)
			continue
		case v.Secret != nil:
			s := v.Secret
			source, data, items, defMode, optional = "Secret "+s.SecretName, secrets[s.SecretName], s.Items, s.DefaultMode, s.Optional
		case v.ConfigMap != nil:
			c := v.ConfigMap
			source, data, items, defMode, optional = "ConfigMap "+c.Name, configMaps[c.Name], c.Items, c.DefaultMode, c.Optional
		default:
			t.Fatalf("volume %s: a kind of volume this test cannot lay out", v.Name)
		}
		if defMode != nil {
			mode = *defMode
		}
		if data == nil && !ptrTrue(optional) {
			t.Fatalf("the pod mounts %s, which this test does not provide", source)
		}
		if items == nil {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		files := map[string]string{}
		for _, it := range items {
			content, ok := data[it.Key]
			if !ok {
				t.Fatalf("the pod mounts key %s of %s, which this test does not provide", it.Key, source)
			}
			files[it.Path] = content
		}
		if m.SubPath != "" {
			content, ok := files[m.SubPath]
			if !ok {
				t.Fatalf("mount %s: subPath %s is not in %s", m.MountPath, m.SubPath, source)
			}
			put(host(m.MountPath), content, mode)
			continue
		}
		mkdir(host(m.MountPath), 0o755)
		for p, content := range files {
			put(host(path.Join(m.MountPath, p)), content, mode)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// buildValised builds cmd/valised and cmd/valisectl side by side, into a
// directory every user may read, and returns valised's path.
func buildValised(t *testing.T) string {
	t.Helper()
	testbin.Path(t, "valisectl")
	return testbin.Path(t, "valised")
}

// worldReadableTempDir returns a t.TempDir that other users may traverse.
func worldReadableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loopbackConfig returns the ConfigMap's valised.yaml with its TCP
// listeners moved to loopback ports the kernel picks (the kubelet reaches
// the pod's own address; here tests share one machine).
func loopbackConfig(t *testing.T, text string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	listen, _ := doc["listen"].(map[string]any)
	for _, k := range []string{"client", "federation", "metrics", "health"} {
		if _, ok := listen[k]; ok {
			listen[k] = "127.0.0.1:0"
		}
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withPeer adds p to federation.peers of the YAML config text.
func withPeer(t *testing.T, text string, p config.Peer) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	fed, _ := doc["federation"].(map[string]any)
	if fed == nil {
		fed = map[string]any{}
		doc["federation"] = fed
	}
	peers, _ := fed["peers"].([]any)
	fed["peers"] = append(peers, map[string]any{"name": p.Name, "address": p.Address, "ca_bundle_file": p.CABundleFile})
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot lists every path under root.
func snapshot(t *testing.T, root string) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths[p] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// pod is one replica of the Deployment run as a process.
type pod struct {
	root    string // the pod's filesystem
	data    string // the data directory, under root
	before  map[string]bool
	cmd     *exec.Cmd
	addrs   map[string]any // from the "node serving" log line
	exited  chan struct{}
	logs    strings.Builder // written by the reader until exited
	waitErr error           // set before exited is closed
}

// podEnv is the environment of what the test runs: no VALISE_ variable
// overrides the config, as in the pod.
func podEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "VALISE_") })
}

// runAs makes cmd run as the pod's user when the test runs as root.
func runAs(cmd *exec.Cmd, id podIdentity, asRoot bool) {
	if asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: []uint32{uint32(id.fsGroup)}}}
	}
}

// startPod lays out a new pod's filesystem and starts the container's
// command in it, returning once the node logs "node serving".
func startPod(t *testing.T, bin string, spec *corev1.PodSpec, c *corev1.Container, id podIdentity,
	secrets, configMaps map[string]map[string]string, asRoot bool) *pod {
	t.Helper()
	p := &pod{root: worldReadableTempDir(t), exited: make(chan struct{})}
	materialize(t, p.root, spec, c, id, secrets, configMaps, asRoot)
	p.data = filepath.Join(p.root, filepath.FromSlash(dataDir(t, c)))
	p.before = snapshot(t, p.root)
	args := slices.Clone(c.Args)
	args[slices.Index(args, "--data")+1] = p.data
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = podEnv()
	runAs(p.cmd, id, asRoot)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			p.logs.WriteString(sc.Text() + "\n")
			var line map[string]any
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "node serving" {
				serving <- line
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("valised in %s logs:\n%s", p.root, p.logs.String())
		}
	})
	select {
	case p.addrs = <-serving:
	case <-p.exited:
		t.Fatalf("valised exited before serving: %v\n%s", p.waitErr, p.logs.String())
	case <-time.After(2 * time.Minute):
		t.Fatal("valised did not log \"node serving\" within 2 minutes")
	}
	return p
}

// probe asks what the kubelet's probes ask: liveness "" and readiness
// valise.ready on the plaintext health listener. It waits for readiness.
func (p *pod) probe(t *testing.T) {
	t.Helper()
	readiness := readyService
	addr, _ := p.addrs["health"].(string)
	if addr == "" {
		t.Fatalf("the node serves no health listener: %v", p.addrs)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	if r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("liveness: Check(\"\") = %v, %v; want SERVING", r, err)
	}
	watch, err := hc.Watch(t.Context(), &healthpb.HealthCheckRequest{Service: readiness})
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := watch.Recv()
		if err != nil {
			t.Fatalf("readiness: watching %q: %v", readiness, err)
		}
		if r.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
	}
}

// checkWrites checks that the node created files only in the writable
// emptyDir, as the pod's user.
func (p *pod) checkWrites(t *testing.T, fsys *podFS, id podIdentity, asRoot bool) {
	t.Helper()
	for f := range snapshot(t, p.root) {
		if p.before[f] {
			continue
		}
		rel := "/" + filepath.ToSlash(strings.TrimPrefix(f, p.root+string(filepath.Separator)))
		if mf, ok := fsys.lookup(rel); !ok || !mf.writable {
			t.Errorf("valised created %s outside the writable emptyDir", rel)
		}
		if fi, err := os.Lstat(f); asRoot && err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int64(st.Uid) != id.uid {
				t.Errorf("%s belongs to uid %d, want the pod's user %d", rel, st.Uid, id.uid)
			}
		}
	}
}

// stop sends SIGTERM, as the kubelet does, and expects a clean exit.
func (p *pod) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			t.Errorf("valised after SIGTERM: %v, want a clean exit", p.waitErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("valised did not exit within 2 minutes of SIGTERM")
	}
}

// TestPodRunsNode runs the real valised the way the Deployment runs it,
// two replicas at once: each as the pod's user (when the test runs as
// root), with the pod's arguments, in its own copy of the pod's filesystem
// where the Secrets hold one node made by `valised init` and the DSN of a
// fresh PostgreSQL database they share, and the ConfigMap holds
// valised.yaml (listeners on loopback). It asks each what the kubelet's
// probes ask, runs the docs' valised check in one, creates a user through
// one replica's admin socket and finds it through the other's with the
// docs' valisectl commands, finds the peer declared in valised.yaml with
// its CA bundle from the optional ConfigMap valise-peers, checks that the
// nodes wrote only in their emptyDir, and stops them with SIGTERM.
func TestPodRunsNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs valised; skipped with -short")
	}
	dsn := pgtest.DSN(t)
	m := load(t)
	d, c := m.valised(t)
	spec := &d.Spec.Template.Spec
	cm := one(t, "ConfigMap", m.configMaps)
	cfg := loadNodeConfig(t, m).cfg
	name := cfg.Node.Name
	bin := buildValised(t)

	initDir := filepath.Join(t.TempDir(), "init")
	if out, err := exec.Command(bin, "init", "--data", initDir, "--name", name).CombinedOutput(); err != nil {
		t.Fatalf("valised init: %v\n%s", err, out)
	}
	node := map[string]string{}
	for _, f := range []string{"ca.crt", "node.crt", "node.key", "signing.key"} {
		b, err := os.ReadFile(filepath.Join(initDir, f))
		if err != nil {
			t.Fatal(err)
		}
		node[f] = string(b)
	}
	// A peer declared as configmap.yaml's comment shows, its CA bundle in
	// the optional ConfigMap valise-peers (docs/ops/kubernetes.md).
	const peerName = "ministry-b.example"
	peerDir := filepath.Join(t.TempDir(), "peer")
	if out, err := exec.Command(bin, "init", "--data", peerDir, "--name", peerName).CombinedOutput(); err != nil {
		t.Fatalf("valised init (peer): %v\n%s", err, out)
	}
	peerCA, err := os.ReadFile(filepath.Join(peerDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	valisedYAML := withPeer(t, loopbackConfig(t, cm.Data[config.FileName]), config.Peer{
		Name: peerName, Address: "valise.ministry-b.example:7444", CABundleFile: "peers/" + peerName + "-ca.pem"})

	// The Secrets as docs/ops/kubernetes.md creates them.
	secrets := map[string]map[string]string{"valise-node": node, "valise-postgres": {"dsn": dsn}}
	configMaps := map[string]map[string]string{
		cm.Name:        {config.FileName: valisedYAML},
		"valise-peers": {peerName + "-ca.pem": string(peerCA)},
	}

	id := identityOf(t, spec, c)
	asRoot := os.Geteuid() == 0
	if !asRoot {
		t.Logf("not root: valised runs as this user, not as uid %d", id.uid)
	}
	if *d.Spec.Replicas < 2 {
		t.Fatalf("replicas = %d; this test runs two", *d.Spec.Replicas)
	}
	pods := []*pod{
		startPod(t, bin, spec, c, id, secrets, configMaps, asRoot),
		startPod(t, bin, spec, c, id, secrets, configMaps, asRoot),
	}
	for _, p := range pods {
		p.probe(t)
	}

	// docs/ops/kubernetes.md: kubectl exec ... valisectl --data /var/lib/valise.
	ctl := func(p *pod, stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(filepath.Dir(bin), "valisectl"), append([]string{"--data", p.data}, args...)...)
		cmd.Env = podEnv()
		cmd.Stdin = strings.NewReader(stdin)
		runAs(cmd, id, asRoot)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("valisectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	check := exec.Command(bin, "check", "--data", pods[0].data)
	check.Env = podEnv()
	runAs(check, id, asRoot)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("valised check --data %s: %v\n%s", pods[0].data, err, out)
	}
	ctl(pods[0], "alice-password\n", "user", "create", "alice", "--password-stdin")
	if out := ctl(pods[1], "", "user", "list"); !strings.Contains(out, "alice") {
		t.Errorf("user list through the second replica:\n%s\nwant alice, created through the first", out)
	}
	// docs/ops/kubernetes.md: kubectl exec -i ... peer add ... --ca-bundle - < CA.
	ctl(pods[0], string(peerCA), "peer", "add", "ministry-c.example", "--address", "valise.ministry-c.example:7444", "--ca-bundle", "-")
	out := ctl(pods[1], "", "peer", "list")
	for _, want := range []string{peerName, "ministry-c.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("peer list through the second replica:\n%s\nwant %s (one declared in valised.yaml with its CA bundle in valise-peers, one added with --ca-bundle - through the first replica)", out, want)
		}
	}

	fsys := newPodFS(t, spec, c)
	for _, p := range pods {
		p.checkWrites(t, fsys, id, asRoot)
		sock := filepath.Join(p.root, filepath.FromSlash(config.Path(dataDir(t, c), cfg.Listen.AdminSocket)))
		if fi, err := os.Stat(sock); err != nil || fi.Mode()&fs.ModeSocket == 0 {
			t.Errorf("no admin socket at %s: %v", sock, err)
		}
	}
	for _, p := range pods {
		p.stop(t)
	}
}
