package kubernetes

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// image is what deploy/container/Containerfile builds.
const image = "valise/valised"

// readyService is the gRPC health service that is SERVING only while the
// node's database answers.
const readyService = "valise.ready"

// podLabels returns the Deployment's pod template labels.
func podLabels(t *testing.T, m *manifests) labels.Set {
	t.Helper()
	d := one(t, "Deployment", m.deploys)
	return labels.Set(d.Spec.Template.Labels)
}

// selects reports whether a non-empty label selector selects pods with
// the given labels.
func selects(t *testing.T, what string, sel *metav1.LabelSelector, pod labels.Set) bool {
	t.Helper()
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		t.Errorf("%s: empty selector (it would select every pod)", what)
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return false
	}
	return s.Matches(pod)
}

// TestDeploymentSecurity checks the pod's hardening: non-root, read-only
// root filesystem, no privilege escalation, no capabilities, seccomp
// RuntimeDefault, no host namespaces, no service account token.
func TestDeploymentSecurity(t *testing.T) {
	m := load(t)
	d, _ := m.valised(t)
	spec := d.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatal("the pod has no securityContext")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("the pod shares a host namespace")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: valised needs no Kubernetes API access")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}
	if got := *d.Spec.Replicas; got < 2 {
		t.Errorf("replicas = %d, want at least 2", got)
	}
	if len(spec.TopologySpreadConstraints) == 0 && (spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil) {
		t.Error("no topology spread constraint or pod anti-affinity: replicas may share one machine")
	}
	for i, tsc := range spec.TopologySpreadConstraints {
		if !selects(t, fmt.Sprintf("topologySpreadConstraints[%d]", i), tsc.LabelSelector, labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("topologySpreadConstraints[%d] does not select the Deployment's pods", i)
		}
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s has no securityContext", c.Name)
			continue
		}
		// Container settings override the pod's.
		nonRoot := ptrTrue(sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && ptrTrue(psc.RunAsNonRoot))
		uid := sc.RunAsUser
		if uid == nil {
			uid = psc.RunAsUser
		}
		if !nonRoot {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if uid == nil || *uid == 0 {
			t.Errorf("container %s: runAsUser is not set to a non-zero uid (the image's user is not checked here)", c.Name)
		}
		if gid := sc.RunAsGroup; gid != nil && *gid == 0 {
			t.Errorf("container %s: runs in group root", c.Name)
		}
		if !ptrTrue(sc.ReadOnlyRootFilesystem) {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if ptrTrue(sc.Privileged) {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities are not drop [ALL] with nothing added", c.Name)
		}
		if sp := sc.SeccompProfile; sp != nil && sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile %s overrides the pod's RuntimeDefault", c.Name, sp.Type)
		}
		if c.Image != image && !strings.HasPrefix(c.Image, image+":") && !strings.HasPrefix(c.Image, image+"@") {
			t.Errorf("container %s: image %q, want %s (what deploy/container/Containerfile builds)", c.Name, c.Image, image)
		}
	}
	// Secret files: readable by the pod's group at most (the default,
	// 0644, is world-readable).
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		if m := v.Secret.DefaultMode; m == nil {
			t.Errorf("volume %s: Secret defaultMode unset (0644, world-readable), want at most 0440", v.Name)
		} else if *m&0o037 != 0 {
			t.Errorf("volume %s: Secret defaultMode %#o, want at most 0440", v.Name, *m)
		}
		for _, it := range v.Secret.Items {
			if m := it.Mode; m != nil && *m&0o037 != 0 {
				t.Errorf("volume %s item %s: mode %o, want at most 0440", v.Name, it.Key, *m)
			}
		}
	}
	pinned := false
	for _, im := range m.kust.Images {
		pinned = pinned || (im.Name == image && im.NewTag != "" && im.NewTag != "latest")
	}
	if !pinned {
		t.Errorf("kustomization.yaml does not pin %s to a tag other than latest", image)
	}
}

// TestResources checks that every container requests CPU and memory and
// has a memory limit at least its request.
func TestResources(t *testing.T) {
	m := load(t)
	d, _ := m.valised(t)
	for _, c := range d.Spec.Template.Spec.Containers {
		r := c.Resources
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, ok := r.Requests[name]
			if !ok || req.IsZero() {
				t.Errorf("container %s: no %s request", c.Name, name)
				continue
			}
			if lim, ok := r.Limits[name]; ok && lim.Cmp(req) < 0 {
				t.Errorf("container %s: %s limit %s is below its request %s", c.Name, name, lim.String(), req.String())
			}
		}
		if lim, ok := r.Limits[corev1.ResourceMemory]; !ok || lim.IsZero() {
			t.Errorf("container %s: no memory limit", c.Name)
		}
	}
}

// containerPort returns the container's port named or numbered by p, or
// false.
func containerPort(c *corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

// TestContainerPortsMatchConfig checks that the container declares each
// listener of valised.yaml under its name, on the configured port.
func TestContainerPortsMatchConfig(t *testing.T) {
	m := load(t)
	nc := loadNodeConfig(t, m)
	_, c := m.valised(t)
	want := map[string]string{
		"client": nc.cfg.Listen.Client, "federation": nc.cfg.Listen.Federation,
		"metrics": nc.cfg.Listen.Metrics, "health": nc.health,
	}
	for name, addr := range want {
		cp, ok := containerPort(c, intstr.FromString(name))
		if !ok {
			t.Errorf("container %s declares no port named %s", c.Name, name)
			continue
		}
		if p := port(t, "listen."+name, addr); cp.ContainerPort != p {
			t.Errorf("container port %s = %d, but valised.yaml listens on %s", name, cp.ContainerPort, addr)
		}
	}
}

// TestProbesUseGRPCHealthPort checks that liveness, readiness and startup
// are the kubelet's native gRPC probes on listen.health, readiness on the
// readiness service.
func TestProbesUseGRPCHealthPort(t *testing.T) {
	m := load(t)
	nc := loadNodeConfig(t, m)
	if nc.health == "" {
		t.Fatal("valised.yaml sets no listen.health: the kubelet's gRPC probes have nothing to reach")
	}
	health := port(t, "listen.health", nc.health)
	_, c := m.valised(t)
	for _, p := range []struct {
		name    string
		probe   *corev1.Probe
		service string
	}{
		{"startupProbe", c.StartupProbe, ""},
		{"livenessProbe", c.LivenessProbe, ""},
		{"readinessProbe", c.ReadinessProbe, readyService},
	} {
		if p.probe == nil {
			t.Errorf("container %s has no %s", c.Name, p.name)
			continue
		}
		g := p.probe.GRPC
		if g == nil || p.probe.HTTPGet != nil || p.probe.TCPSocket != nil || p.probe.Exec != nil {
			t.Errorf("%s is not a gRPC probe alone", p.name)
			continue
		}
		if g.Port != health {
			t.Errorf("%s probes port %d, want the health port %d (listen.health %s)", p.name, g.Port, health, nc.health)
		}
		if got := ""; g.Service != nil {
			got = *g.Service
			if got != p.service {
				t.Errorf("%s asks for service %q, want %q", p.name, got, p.service)
			}
		} else if p.service != "" {
			t.Errorf("%s asks for service \"\", want %q", p.name, p.service)
		}
	}
}

// TestServicesTargetDeclaredPorts checks that the Services select the
// Deployment's pods and target ports the container declares, and that
// there is one for the client port and one for the federation port.
func TestServicesTargetDeclaredPorts(t *testing.T) {
	m := load(t)
	nc := loadNodeConfig(t, m)
	_, c := m.valised(t)
	pods := podLabels(t, m)
	exposed := map[int32]bool{}
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(pods) {
			t.Errorf("Service %s does not select the Deployment's pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port) // the default
			}
			cp, ok := containerPort(c, target)
			if !ok {
				t.Errorf("Service %s port %s targets %s, which the container does not declare", s.Name, p.Name, target.String())
				continue
			}
			if p.Protocol != "" && p.Protocol != cp.Protocol {
				t.Errorf("Service %s port %s is %s, the container port %s", s.Name, p.Name, p.Protocol, cp.Protocol)
			}
			exposed[cp.ContainerPort] = true
		}
	}
	for key, addr := range map[string]string{"listen.client": nc.cfg.Listen.Client, "listen.federation": nc.cfg.Listen.Federation} {
		if !exposed[port(t, key, addr)] {
			t.Errorf("no Service targets %s (%s)", key, addr)
		}
	}
	if nc.health != "" && exposed[port(t, "listen.health", nc.health)] {
		t.Error("a Service exposes the plaintext health port; only the kubelet needs it")
	}
}

// TestPDBSelectsPods checks that the PodDisruptionBudget covers the
// Deployment's pods and still lets a drain proceed.
func TestPDBSelectsPods(t *testing.T) {
	m := load(t)
	pdb := one(t, "PodDisruptionBudget", m.pdbs)
	d, _ := m.valised(t)
	if !selects(t, "PodDisruptionBudget "+pdb.Name, pdb.Spec.Selector, podLabels(t, m)) {
		t.Errorf("PodDisruptionBudget %s does not select the Deployment's pods", pdb.Name)
	}
	replicas := int(*d.Spec.Replicas)
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, replicas, true)
		if err != nil || v < 1 || v >= replicas {
			t.Errorf("maxUnavailable %s: want at least 1 and fewer than %d replicas", pdb.Spec.MaxUnavailable.String(), replicas)
		}
	case pdb.Spec.MinAvailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, replicas, true)
		if err != nil || v < 1 || v >= replicas {
			t.Errorf("minAvailable %s: want at least 1 and fewer than %d replicas (or no drain can proceed)", pdb.Spec.MinAvailable.String(), replicas)
		}
	default:
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
}

// TestNetworkPolicy checks that the NetworkPolicy applies to the pods in
// both directions and opens only ports the container declares, the client
// and federation ports among them.
func TestNetworkPolicy(t *testing.T) {
	m := load(t)
	np := one(t, "NetworkPolicy", m.netpols)
	nc := loadNodeConfig(t, m)
	_, c := m.valised(t)
	if !selects(t, "NetworkPolicy "+np.Name, &np.Spec.PodSelector, podLabels(t, m)) {
		t.Errorf("NetworkPolicy %s does not select the Deployment's pods", np.Name)
	}
	types := map[string]bool{}
	for _, pt := range np.Spec.PolicyTypes {
		types[string(pt)] = true
	}
	if !types["Ingress"] || !types["Egress"] {
		t.Errorf("policyTypes %v: want Ingress and Egress", np.Spec.PolicyTypes)
	}
	open := map[int32]bool{}
	for i, r := range np.Spec.Ingress {
		if len(r.Ports) == 0 {
			t.Errorf("ingress[%d] opens every port", i)
		}
		for _, p := range r.Ports {
			if p.Port == nil {
				t.Errorf("ingress[%d] opens every port of a protocol", i)
				continue
			}
			cp, ok := containerPort(c, *p.Port)
			if !ok {
				t.Errorf("ingress[%d] opens port %s, which the container does not declare", i, p.Port.String())
				continue
			}
			if cp.Name == "metrics" && len(r.From) == 0 {
				t.Errorf("ingress[%d] opens the metrics port to everyone", i)
			}
			open[cp.ContainerPort] = true
		}
	}
	for key, addr := range map[string]string{"listen.client": nc.cfg.Listen.Client, "listen.federation": nc.cfg.Listen.Federation} {
		if !open[port(t, key, addr)] {
			t.Errorf("NetworkPolicy does not let %s (%s) in", key, addr)
		}
	}
	dbOpen := false
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			dbOpen = dbOpen || (p.Port != nil && p.Port.IntValue() == 5432)
		}
	}
	if !dbOpen {
		t.Error("NetworkPolicy lets no traffic out to PostgreSQL (5432)")
	}
}

// TestNamespaceRestricted checks that the namespace enforces the
// restricted Pod Security profile and is the one kustomize applies.
func TestNamespaceRestricted(t *testing.T) {
	m := load(t)
	ns := one(t, "Namespace", m.namespaces)
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace %s: pod-security enforce = %q, want restricted", ns.Name, got)
	}
	if m.kust.Namespace != ns.Name {
		t.Errorf("kustomization.yaml namespace %q, want %q (the Namespace manifest)", m.kust.Namespace, ns.Name)
	}
}

// secretLike matches text that carries a secret: a connection string, a
// URL with a password, a PEM block, a password assignment.
var secretLike = regexp.MustCompile(`(?i)(postgres(ql)?://|-----BEGIN |://[^/\s:@]+:[^/\s@]+@|\bpassword\s*=|\bsslpassword\b)`)

// secretName matches names of variables that hold secrets.
var secretName = regexp.MustCompile(`(?i)(password|passwd|secret|token|dsn|private|_key$)`)

// inlinedSecrets returns what in the manifests inlines a secret: a Secret
// with data, a literal env value that is or looks like one, a ConfigMap or
// annotation value that looks like one.
func inlinedSecrets(m *manifests) []string {
	var found []string
	for _, s := range m.secrets {
		if len(s.Data) > 0 || len(s.StringData) > 0 {
			found = append(found, fmt.Sprintf("Secret %s holds data: create it with kubectl, never in a manifest", s.Name))
		}
	}
	for _, cm := range m.configMaps {
		for k, v := range cm.Data {
			if secretLike.MatchString(v) {
				found = append(found, fmt.Sprintf("ConfigMap %s key %s holds what looks like a secret", cm.Name, k))
			}
		}
	}
	for _, d := range m.deploys {
		spec := d.Spec.Template.Spec
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			for _, e := range c.Env {
				if e.Value == "" {
					continue
				}
				if secretName.MatchString(e.Name) || secretLike.MatchString(e.Value) {
					found = append(found, fmt.Sprintf("container %s env %s has a literal value; take it from a Secret", c.Name, e.Name))
				}
			}
			for _, a := range append(slices.Clone(c.Command), c.Args...) {
				if secretLike.MatchString(a) {
					found = append(found, fmt.Sprintf("container %s has a secret-like argument", c.Name))
				}
			}
		}
		for k, v := range d.Spec.Template.Annotations {
			if secretLike.MatchString(v) {
				found = append(found, fmt.Sprintf("Deployment %s annotation %s looks like a secret", d.Name, k))
			}
		}
	}
	return found
}

// TestNoInlinedSecrets checks that no secret is written in the manifests:
// certificates, keys and the DSN come from Secrets created out of band.
func TestNoInlinedSecrets(t *testing.T) {
	for _, f := range inlinedSecrets(load(t)) {
		t.Error(f)
	}
}

// TestInlinedSecretsDetects proves the secret check finds what it looks
// for.
func TestInlinedSecretsDetects(t *testing.T) {
	dep := func(env ...corev1.EnvVar) *manifests {
		d := one(t, "Deployment", load(t).deploys).DeepCopy()
		d.Spec.Template.Spec.Containers[0].Env = env
		return &manifests{deploys: []*appsv1.Deployment{d}}
	}
	for _, tc := range []struct {
		name string
		m    *manifests
		want int
	}{
		{"secret with data", &manifests{secrets: []*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"dsn": "x"}}}}, 1},
		{"secret without data", &manifests{secrets: []*corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "s"}}}}, 0},
		{"dsn in env", dep(corev1.EnvVar{Name: "VALISE_POSTGRES_DSN", Value: "host=db user=valise"}), 1},
		{"url in env", dep(corev1.EnvVar{Name: "DB", Value: "postgresql://valise@db/valise"}), 1},
		{"password in url", dep(corev1.EnvVar{Name: "X", Value: "https://u:p4ss@h/"}), 1},
		{"key in env", dep(corev1.EnvVar{Name: "K", Value: "-----BEGIN PRIVATE KEY-----"}), 1},
		{"env from secret", dep(corev1.EnvVar{Name: "VALISE_POSTGRES_DSN", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "p"}, Key: "dsn"}}}), 0},
		{"harmless env", dep(corev1.EnvVar{Name: "VALISE_LOG_LEVEL", Value: "debug"}), 0},
		{"dsn in config", &manifests{configMaps: []*corev1.ConfigMap{{Data: map[string]string{"valised.yaml": "dsn: postgres://a:b@c/d"}}}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := inlinedSecrets(tc.m); len(got) != tc.want {
				t.Errorf("got %d findings %q, want %d", len(got), got, tc.want)
			}
		})
	}
}

// TestSecretsDocumented checks that every Secret the pod mounts is one
// docs/ops/kubernetes.md tells the admin how to create, with every key
// the pod reads.
func TestSecretsDocumented(t *testing.T) {
	m := load(t)
	d, _ := m.valised(t)
	b, err := os.ReadFile("../../docs/ops/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		cmd := "kubectl create secret generic " + v.Secret.SecretName
		i := strings.Index(doc, cmd)
		if i < 0 {
			t.Errorf("docs/ops/kubernetes.md does not show %q", cmd)
			continue
		}
		// The command runs to the end of its (backslash-continued) lines.
		end := i
		for {
			nl := strings.IndexByte(doc[end:], '\n')
			if nl < 0 {
				end = len(doc)
				break
			}
			end += nl
			if !strings.HasSuffix(strings.TrimRight(doc[:end], " "), "\\") {
				break
			}
			end++
		}
		for _, it := range v.Secret.Items {
			if !strings.Contains(doc[i:end], "--from-file="+it.Key+"=") && !strings.Contains(doc[i:end], "--from-literal="+it.Key+"=") {
				t.Errorf("docs/ops/kubernetes.md: %q does not set key %s", cmd, it.Key)
			}
		}
	}
}
