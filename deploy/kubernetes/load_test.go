package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoding it strictly refuses any other field, so a field added to
// kustomization.yaml is added here and checked.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag,omitempty"`
	} `json:"images"`
}

// manifests is every object of the directory, decoded strictly.
type manifests struct {
	kust       kustomization
	namespaces []*corev1.Namespace
	configMaps []*corev1.ConfigMap
	secrets    []*corev1.Secret
	deploys    []*appsv1.Deployment
	services   []*corev1.Service
	pdbs       []*policyv1.PodDisruptionBudget
	netpols    []*networkingv1.NetworkPolicy
}

// kinds maps apiVersion and kind to a new object of the Kubernetes API
// type a manifest must decode into. Anything else is refused.
var kinds = map[string]func() any{
	"v1/Namespace":                       func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                       func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                          func() any { return new(corev1.Secret) },
	"v1/Service":                         func() any { return new(corev1.Service) },
	"apps/v1/Deployment":                 func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":      func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return new(networkingv1.NetworkPolicy) },
}

// decodeStrict decodes one manifest into its Kubernetes API type: one
// YAML document, a known apiVersion and kind, no unknown or duplicate
// field.
func decodeStrict(name string, b []byte) (any, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "---") {
			return nil, fmt.Errorf("%s: holds a document separator: one object per file, so that each is listed in kustomization.yaml", name)
		}
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(b, &tm); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q is not a kind this test knows", name, tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return obj, nil
}

// loadDir reads kustomization.yaml and every resource it lists from dir.
func loadDir(dir string) (*manifests, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	m := &manifests{}
	if err := yaml.UnmarshalStrict(b, &m.kust); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if m.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || m.kust.Kind != "Kustomization" {
		return nil, fmt.Errorf("kustomization.yaml: apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", m.kust.APIVersion, m.kust.Kind)
	}
	var problems []string
	for _, name := range m.kust.Resources {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			problems = append(problems, fmt.Sprintf("kustomization.yaml lists %s: %v", name, err))
			continue
		}
		obj, err := decodeStrict(name, b)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		case *corev1.Secret:
			m.secrets = append(m.secrets, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *appsv1.Deployment:
			m.deploys = append(m.deploys, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *networkingv1.NetworkPolicy:
			m.netpols = append(m.netpols, o)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return m, nil
}

// load loads this directory's manifests and fails the test on any error.
func load(t *testing.T) *manifests {
	t.Helper()
	m, err := loadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// one returns the only element of s, failing the test otherwise.
func one[T any](t *testing.T, what string, s []T) T {
	t.Helper()
	if len(s) != 1 {
		t.Fatalf("got %d %s manifests, want exactly 1", len(s), what)
	}
	return s[0]
}

// valised returns the Deployment and its valised container.
func (m *manifests) valised(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := one(t, "Deployment", m.deploys)
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "valised" {
			return d, c
		}
	}
	t.Fatalf("Deployment %s has no container named valised", d.Name)
	return nil, nil
}

// TestKustomizationListsEveryManifest checks that kustomization.yaml lists
// every manifest of the directory once, and only files that exist.
func TestKustomizationListsEveryManifest(t *testing.T) {
	m := load(t) // fails on a listed file that is missing or does not decode
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || e.Name() == "kustomization.yaml" || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		onDisk = append(onDisk, e.Name())
	}
	listed := slices.Clone(m.kust.Resources)
	slices.Sort(listed)
	for i := 1; i < len(listed); i++ {
		if listed[i] == listed[i-1] {
			t.Errorf("kustomization.yaml lists %s twice", listed[i])
		}
	}
	for _, f := range onDisk {
		if !slices.Contains(listed, f) {
			t.Errorf("%s is not listed in kustomization.yaml resources", f)
		}
	}
	for _, f := range listed {
		if !slices.Contains(onDisk, f) {
			t.Errorf("kustomization.yaml lists %s, which is not a manifest file of this directory", f)
		}
	}
}

// TestLoadRefusesBadManifests proves the loader is strict: each broken
// directory is refused with an error naming the problem.
func TestLoadRefusesBadManifests(t *testing.T) {
	const kust = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - a.yaml\n"
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
	for _, tc := range []struct {
		name, kust, file, want string
	}{
		{"unknown field", kust, cm + "dta:\n  k: v\n", `unknown field "dta"`},
		{"unknown nested field", kust, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  replica: 2\n", `unknown field "replica"`},
		{"duplicate field", kust, cm + "data:\n  k: v\ndata:\n  k: w\n", "already set"},
		{"unknown kind", kust, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n", `kind "Pod" is not a kind`},
		{"two documents", kust, cm + "---\n" + cm, "document separator"},
		{"missing file", kust + "  - b.yaml\n", cm, "lists b.yaml"},
		{"unknown kustomization field", kust + "commonLabels:\n  a: b\n", cm, `unknown field "commonLabels"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "kustomization.yaml"), tc.kust)
			write(t, filepath.Join(dir, "a.yaml"), tc.file)
			_, err := loadDir(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadDir: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// write creates a file for a test.
func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
