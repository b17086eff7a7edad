package kubernetes

import (
	"net"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/valise-im/valise/internal/config"
)

// nodeConfig is the valised.yaml of the ConfigMap, as the node reads it.
type nodeConfig struct {
	cfg config.Config
	// health is listen.health, the plaintext gRPC health listener.
	health string
}

// loadNodeConfig decodes the ConfigMap's valised.yaml over the defaults
// with config.Decode, which refuses unknown keys as `valised serve` does.
func loadNodeConfig(t *testing.T, m *manifests) nodeConfig {
	t.Helper()
	cm := one(t, "ConfigMap", m.configMaps)
	text, ok := cm.Data[config.FileName]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Name, config.FileName)
	}
	var doc struct {
		Listen map[string]any `yaml:"listen"`
	}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("ConfigMap %s: %s: %v", cm.Name, config.FileName, err)
	}
	nc := nodeConfig{}
	nc.health, _ = doc.Listen["health"].(string)
	b := []byte(text)
	nc.cfg = config.Default()
	if err := config.Decode(b, &nc.cfg); err != nil {
		t.Fatalf("ConfigMap %s: %s does not decode as valised reads it: %v", cm.Name, config.FileName, err)
	}
	return nc
}

// port returns the port of a HOST:PORT address, failing the test if it
// is not one.
func port(t *testing.T, what, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q is not HOST:PORT: %v", what, addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		t.Fatalf("%s: %q has no numeric port", what, addr)
	}
	return int32(n)
}

// dataDir returns the directory the container passes to serve --data.
func dataDir(t *testing.T, c *corev1.Container) string {
	t.Helper()
	args := append(slices.Clone(c.Command), c.Args...)
	i := slices.Index(args, "--data")
	if i < 0 || i+1 >= len(args) || !path.IsAbs(args[i+1]) {
		t.Fatalf("container %s: args %q do not run serve with --data ABSOLUTE-DIR", c.Name, args)
	}
	if !slices.Contains(args, "serve") {
		t.Fatalf("container %s: args %q do not run valised serve", c.Name, args)
	}
	return path.Clean(args[i+1])
}

// mountedFile is one file or directory the pod's volumes put in the
// container's filesystem.
type mountedFile struct {
	mount    corev1.VolumeMount
	volume   corev1.Volume
	writable bool
	// file is set when the mount places a single known file (an item of a
	// ConfigMap or Secret, or a subPath).
	file bool
}

// podFS is the container's view of its volumes: for a path, the mount
// that serves it.
type podFS struct {
	mounts  []corev1.VolumeMount
	volumes map[string]corev1.Volume
	// files are the paths of the known files (items and subPaths).
	files map[string]bool
}

func newPodFS(t *testing.T, spec *corev1.PodSpec, c *corev1.Container) *podFS {
	t.Helper()
	fs := &podFS{volumes: map[string]corev1.Volume{}, files: map[string]bool{}}
	for _, v := range spec.Volumes {
		fs.volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := fs.volumes[m.Name]
		if !ok {
			t.Fatalf("container %s mounts volume %q, which the pod does not declare", c.Name, m.Name)
		}
		fs.mounts = append(fs.mounts, m)
		if m.SubPath != "" {
			fs.files[path.Clean(m.MountPath)] = true
			continue
		}
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			items = v.Secret.Items
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
		}
		for _, it := range items {
			fs.files[path.Join(m.MountPath, it.Path)] = true
		}
	}
	return fs
}

// lookup returns the mount that serves p (the deepest one), and whether p
// is a file the mounts certainly provide.
func (fs *podFS) lookup(p string) (mountedFile, bool) {
	p = path.Clean(p)
	best := -1
	for i, m := range fs.mounts {
		mp := path.Clean(m.MountPath)
		if p == mp || (m.SubPath == "" && strings.HasPrefix(p, mp+"/")) {
			if best < 0 || len(mp) > len(path.Clean(fs.mounts[best].MountPath)) {
				best = i
			}
		}
	}
	if best < 0 {
		return mountedFile{}, false
	}
	m := fs.mounts[best]
	v := fs.volumes[m.Name]
	mf := mountedFile{mount: m, volume: v, file: fs.files[p]}
	mf.writable = !m.ReadOnly && v.EmptyDir != nil
	return mf, true
}

// TestConfigMapConfigValidates checks that valised.yaml decodes strictly
// and passes config.Validate with its files checked, in a copy of the
// pod's filesystem where the Secrets' and ConfigMap's items are stub files
// in t.TempDir; that every file the config names comes from a read-only
// Secret or ConfigMap item; and that what the node writes (its lock and
// admin socket) lands in the writable emptyDir.
func TestConfigMapConfigValidates(t *testing.T) {
	m := load(t)
	nc := loadNodeConfig(t, m)
	cfg := nc.cfg
	d, c := m.valised(t)
	dir := dataDir(t, c)
	fs := newPodFS(t, &d.Spec.Template.Spec, c)

	if cfg.Storage.Driver != "postgres" {
		t.Errorf("storage.driver = %q, want postgres: several replicas share one database", cfg.Storage.Driver)
	}
	// The config file itself: dir/valised.yaml from the ConfigMap, read-only.
	if mf, ok := fs.lookup(path.Join(dir, config.FileName)); !ok || !mf.file || mf.volume.ConfigMap == nil || mf.writable {
		t.Errorf("%s is not mounted read-only from the ConfigMap", path.Join(dir, config.FileName))
	} else if cm := m.configMaps[0]; mf.volume.ConfigMap.Name != cm.Name {
		t.Errorf("%s comes from ConfigMap %q, want %q", config.FileName, mf.volume.ConfigMap.Name, cm.Name)
	}
	// What the node writes: valised.lock in the data dir, the admin socket.
	for what, p := range map[string]string{
		"valised.lock":        path.Join(dir, "valised.lock"),
		"listen.admin_socket": config.Path(dir, cfg.Listen.AdminSocket),
	} {
		if mf, ok := fs.lookup(p); !ok || !mf.writable || mf.file {
			t.Errorf("%s (%s) is not in a writable emptyDir: the root filesystem is read-only", what, p)
		}
	}
	// Every file the config reads comes read-only from a Secret (keys,
	// DSN) or a ConfigMap (peer CA bundles).
	secretFiles := map[string]string{
		"node.signing_key_file":     cfg.Node.SigningKeyFile,
		"tls.key_file":              cfg.TLS.KeyFile,
		"storage.postgres.dsn_file": cfg.Storage.Postgres.DSNFile,
	}
	publicFiles := map[string]string{
		"tls.ca_file":   cfg.TLS.CAFile,
		"tls.cert_file": cfg.TLS.CertFile,
	}
	for i, p := range cfg.Federation.Peers {
		publicFiles["federation.peers["+strconv.Itoa(i)+"].ca_bundle_file"] = p.CABundleFile
	}
	check := func(key, v string, secret bool) {
		p := config.Path(dir, v)
		mf, ok := fs.lookup(p)
		switch {
		case !ok:
			t.Errorf("%s: %s is not on any volume", key, p)
		case mf.writable || !mf.mount.ReadOnly:
			t.Errorf("%s: %s is on a writable mount", key, p)
		case secret && mf.volume.Secret == nil:
			t.Errorf("%s: %s holds a secret but is not mounted from a Secret", key, p)
		case mf.volume.Secret == nil && mf.volume.ConfigMap == nil:
			t.Errorf("%s: %s comes from neither a Secret nor a ConfigMap", key, p)
		case !mf.file && (mf.volume.ConfigMap == nil || !ptrTrue(mf.volume.ConfigMap.Optional)):
			t.Errorf("%s: %s is not an item of volume %s", key, p, mf.volume.Name)
		}
	}
	for k, v := range secretFiles {
		check(k, v, true)
	}
	for k, v := range publicFiles {
		check(k, v, false)
	}

	// Validate with the files checked, in a stub of the pod's filesystem.
	root := t.TempDir()
	for f := range fs.files {
		write(t, filepath.Join(root, filepath.FromSlash(f)), "stub\n")
	}
	for _, v := range cfg.Federation.Peers {
		// Items of an optional peers ConfigMap without items list.
		write(t, filepath.Join(root, filepath.FromSlash(config.Path(dir, v.CABundleFile))), "stub\n")
	}
	t.Setenv("VALISE_POSTGRES_DSN", "") // the DSN comes from the Secret's file
	if err := cfg.Validate(filepath.Join(root, filepath.FromSlash(dir)), true); err != nil {
		t.Errorf("config.Validate:\n%v", err)
	}

	// Listeners the Services and the kubelet reach bind every address.
	addrs := map[string]string{"listen.client": cfg.Listen.Client, "listen.federation": cfg.Listen.Federation,
		"listen.metrics": cfg.Listen.Metrics, "listen.health": nc.health}
	for key, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			t.Errorf("%s: %q is not HOST:PORT", key, a)
			continue
		}
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			t.Errorf("%s: %q listens on loopback only: the kubelet and the Services cannot reach it", key, a)
		}
	}
}

// TestGracePeriodCoversShutdown checks that the kubelet waits longer than
// the preStop sleep plus the node's graceful stop before it kills.
func TestGracePeriodCoversShutdown(t *testing.T) {
	m := load(t)
	cfg := loadNodeConfig(t, m).cfg
	d, c := m.valised(t)
	grace := int64(30) // the Kubernetes default
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	var preStop int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Fatalf("preStop is not a sleep action (the image has no shell)")
		}
		preStop = c.Lifecycle.PreStop.Sleep.Seconds
	}
	need := preStop + int64(cfg.ShutdownTimeout.D().Seconds())
	if grace <= need {
		t.Errorf("terminationGracePeriodSeconds = %d, want more than preStop %d s + shutdown_timeout %s", grace, preStop, cfg.ShutdownTimeout.D())
	}
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// TestPodFSLookup pins the mount resolution the config test relies on.
func TestPodFSLookup(t *testing.T) {
	spec := &corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "keys", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			Items: []corev1.KeyToPath{{Key: "a", Path: "a.key"}}}}},
	}}
	c := &corev1.Container{Name: "x", VolumeMounts: []corev1.VolumeMount{
		{Name: "data", MountPath: "/d"},
		{Name: "cm", MountPath: "/d/c.yaml", SubPath: "c.yaml", ReadOnly: true},
		{Name: "keys", MountPath: "/d/keys", ReadOnly: true},
	}}
	fs := newPodFS(t, spec, c)
	for _, tc := range []struct {
		path           string
		ok             bool
		vol            string
		writable, file bool
	}{
		{"/d/lock", true, "data", true, false},
		{"/d/c.yaml", true, "cm", false, true},
		{"/d/c.yaml/x", true, "data", true, false}, // a subPath mount holds no children
		{"/d/keys/a.key", true, "keys", false, true},
		{"/d/keys/b.key", true, "keys", false, false},
		{"/d/keysx", true, "data", true, false},
		{"/etc/x", false, "", false, false},
	} {
		mf, ok := fs.lookup(tc.path)
		if ok != tc.ok || mf.volume.Name != tc.vol || mf.writable != tc.writable || mf.file != tc.file {
			t.Errorf("lookup(%s) = %s writable=%v file=%v ok=%v, want %s %v %v %v",
				tc.path, mf.volume.Name, mf.writable, mf.file, ok, tc.vol, tc.writable, tc.file, tc.ok)
		}
	}
}
