package kubernetes

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/valise-im/valise/internal/config"
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
			data   map[string]string
			items  []corev1.KeyToPath
			mode   int32 = 0o644 // the Kubernetes default
			source string
		)
		switch {
		case v.EmptyDir != nil:
			mkdir(host(m.MountPath), 0o777)
			continue
		case v.Secret != nil:
			source = "Secret " + v.Secret.SecretName
			data, items = secrets[v.Secret.SecretName], v.Secret.Items
			if v.Secret.DefaultMode != nil {
				mode = *v.Secret.DefaultMode
			}
			if data == nil && !ptrTrue(v.Secret.Optional) {
				t.Fatalf("the pod mounts %s, which this test does not provide", source)
			}
		case v.ConfigMap != nil:
			source = "ConfigMap " + v.ConfigMap.Name
			data, items = configMaps[v.ConfigMap.Name], v.ConfigMap.Items
			if v.ConfigMap.DefaultMode != nil {
				mode = *v.ConfigMap.DefaultMode
			}
			if data == nil && !ptrTrue(v.ConfigMap.Optional) {
				t.Fatalf("the pod mounts %s, which this test does not provide", source)
			}
		default:
			t.Fatalf("volume %s: a kind of volume this test cannot lay out", v.Name)
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

// buildValised builds cmd/valised into a directory every user may read.
func buildValised(t *testing.T) string {
	t.Helper()
	dir := worldReadableTempDir(t)
	bin := filepath.Join(dir, "valised")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/valise-im/valise/cmd/valised").CombinedOutput()
	if err != nil {
		t.Fatalf("building valised: %v\n%s", err, out)
	}
	return bin
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
	if !configKnowsKey("health") {
		delete(listen, "health") // see loadNodeConfig
	}
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

// TestPodRunsNode runs the real valised the way the Deployment runs it: as
// the pod's user (when the test runs as root), with the pod's arguments,
// in a copy of the pod's filesystem where the Secrets hold a node made by
// `valised init` and a fresh PostgreSQL database's DSN, and the ConfigMap
// holds valised.yaml (listeners on loopback). It then asks what the
// kubelet's probes ask, checks that the node wrote only in the writable
// emptyDir, and stops it with SIGTERM as the kubelet does.
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
	// The Secrets as docs/ops/kubernetes.md creates them.
	secrets := map[string]map[string]string{"valise-node": node, "valise-postgres": {"dsn": dsn}}
	configMaps := map[string]map[string]string{cm.Name: {config.FileName: loopbackConfig(t, cm.Data[config.FileName])}}

	id := identityOf(t, spec, c)
	asRoot := os.Geteuid() == 0
	root := worldReadableTempDir(t)
	materialize(t, root, spec, c, id, secrets, configMaps, asRoot)
	dir := dataDir(t, c)
	before := snapshot(t, root)

	args := slices.Clone(c.Args)
	args[slices.Index(args, "--data")+1] = filepath.Join(root, filepath.FromSlash(dir))
	cmd := exec.Command(bin, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "VALISE_") })
	if asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: []uint32{uint32(id.fsGroup)}}}
	} else {
		t.Logf("not root: valised runs as this user, not as uid %d", id.uid)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The reader keeps the logs and signals "node serving"; it owns logs
	// and waitErr until it closes exited.
	var (
		logs    strings.Builder
		waitErr error
	)
	exited := make(chan struct{})
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var line map[string]any
			if !sent && json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "node serving" {
				serving <- line
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("valised logs:\n%s", logs.String())
		}
	})
	var addrs map[string]any
	select {
	case addrs = <-serving:
	case <-exited:
		t.Fatalf("valised exited before serving: %v", waitErr)
	case <-time.After(2 * time.Minute):
		t.Fatal("valised did not log \"node serving\" within 2 minutes")
	}

	// What the kubelet asks: liveness "" and readiness valise.ready on the
	// plaintext health listener.
	healthAddr, _ := addrs["health"].(string)
	var conn *grpc.ClientConn
	readiness := readyService
	if configKnowsKey("health") {
		if healthAddr == "" {
			t.Fatalf("the node serves no health listener: %v", addrs)
		}
		conn, err = grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		// Before listen.health exists, the same questions go to the
		// client listener's health service over TLS.
		t.Log("no listen.health yet: asking the client listener's health service instead")
		readiness = ""
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(node["ca.crt"]))
		clientAddr, _ := addrs["client"].(string)
		conn, err = grpc.NewClient(clientAddr, grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: name})))
	}
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
			break
		}
	}

	// The node wrote only in the writable emptyDir (its lock and socket).
	fsys := newPodFS(t, spec, c)
	for p := range snapshot(t, root) {
		if before[p] {
			continue
		}
		rel := "/" + filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
		if mf, ok := fsys.lookup(rel); !ok || !mf.writable {
			t.Errorf("valised created %s outside the writable emptyDir", rel)
		}
		if fi, err := os.Lstat(p); asRoot && err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int64(st.Uid) != id.uid {
				t.Errorf("%s belongs to uid %d, want the pod's user %d", rel, st.Uid, id.uid)
			}
		}
	}
	sock := filepath.Join(root, filepath.FromSlash(config.Path(dir, cfg.Listen.AdminSocket)))
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		t.Errorf("no admin socket at %s: %v", sock, err)
	}

	// The kubelet's stop: SIGTERM, then a graceful exit.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("valised after SIGTERM: %v, want a clean exit", waitErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("valised did not exit within 2 minutes of SIGTERM")
	}
}
