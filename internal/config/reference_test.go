package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// referenceFile is the administrator's guide whose configuration table
// TestOperationsConfigReference checks.
var referenceFile = filepath.Join("..", "..", "docs", "OPERATIONS.md")

// referenceRow is one row of the configuration reference.
type referenceRow struct {
	key, def, env string
}

// parseReference reads the table between the config-reference markers:
// | `key` | `default` or — | `VARIABLE` or — | meaning |.
func parseReference(doc string) ([]referenceRow, error) {
	_, rest, ok := strings.Cut(doc, "<!-- config-reference:begin -->")
	if !ok {
		return nil, fmt.Errorf("no <!-- config-reference:begin --> marker")
	}
	table, _, ok := strings.Cut(rest, "<!-- config-reference:end -->")
	if !ok {
		return nil, fmt.Errorf("no <!-- config-reference:end --> marker")
	}
	var rows []referenceRow
	for i, line := range strings.Split(strings.TrimSpace(table), "\n") {
		if i < 2 { // header and separator
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), " | ")
		if len(cells) != 4 {
			return nil, fmt.Errorf("row %q has %d cells, want 4", line, len(cells))
		}
		unquote := func(c string) (string, error) {
			c = strings.TrimSpace(c)
			if c == "—" {
				return "", nil
			}
			if len(c) < 2 || c[0] != '`' || c[len(c)-1] != '`' {
				return "", fmt.Errorf("row %q: cell %q is neither `code` nor —", line, c)
			}
			return c[1 : len(c)-1], nil
		}
		var r referenceRow
		var err error
		if r.key, err = unquote(cells[0]); err != nil || r.key == "" {
			return nil, fmt.Errorf("row %q: bad key cell (%v)", line, err)
		}
		if r.def, err = unquote(cells[1]); err != nil {
			return nil, err
		}
		if r.env, err = unquote(cells[2]); err != nil {
			return nil, err
		}
		if strings.TrimSpace(cells[3]) == "" {
			return nil, fmt.Errorf("row %q has no meaning", line)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// configKeys returns every key of the configuration, from the yaml tags
// of Config: nested sections as a.b, the fields of list elements as
// a.b[].c (and the list itself as a.b).
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		switch ft := f.Type; {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft, key)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, key)
			keys = append(keys, configKeys(ft.Elem(), key+"[]")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// flatten renders c as YAML and returns each scalar or list key's value as
// YAML writes it.
func flatten(t *testing.T, c Config) map[string]string {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(prefix, n.Content[0])
		case yaml.MappingNode:
			for i := 0; i < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, n.Content[i+1])
			}
		default:
			v, err := yaml.Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix] = strings.TrimSpace(string(v))
		}
	}
	walk("", &doc)
	return out
}

// TestOperationsConfigReference checks docs/OPERATIONS.md's configuration
// reference against the configuration: every key of Config is in it once
// and nothing else is; each default is the value Default() has, as YAML
// writes it; and each environment variable overrides exactly the key it
// is listed on, with every variable the configuration reads listed.
func TestOperationsConfigReference(t *testing.T) {
	doc, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parseReference(string(doc))
	if err != nil {
		t.Fatalf("%s: %v", referenceFile, err)
	}

	keys := configKeys(reflect.TypeFor[Config](), "")
	documented := map[string]referenceRow{}
	for _, r := range rows {
		if _, dup := documented[r.key]; dup {
			t.Errorf("%s: %s is documented twice", referenceFile, r.key)
		}
		documented[r.key] = r
		if !slices.Contains(keys, r.key) {
			t.Errorf("%s documents %s, which is not a configuration key", referenceFile, r.key)
		}
	}
	defaults := flatten(t, Default())
	for _, k := range keys {
		r, ok := documented[k]
		if !ok {
			t.Errorf("%s does not document the configuration key %s", referenceFile, k)
			continue
		}
		want, hasDefault := defaults[k]
		if !hasDefault {
			want = "" // the fields of list elements have no default
		}
		if r.def != want {
			t.Errorf("%s: %s: default %q, but the configuration's default is %q", referenceFile, k, r.def, want)
		}
	}

	// Which variables does applyEnv read, and which key does each set?
	var read []string
	(&Config{}).applyEnv(func(name string) string { read = append(read, name); return "" })
	envKey := map[string]string{}
	base := flatten(t, Default())
	for _, name := range read {
		c := Default()
		c.applyEnv(func(n string) string {
			if n == name {
				return "env-probe-value"
			}
			return ""
		})
		for k, v := range flatten(t, c) {
			if v != base[k] {
				if prev, ok := envKey[name]; ok {
					t.Errorf("%s sets both %s and %s", name, prev, k)
				}
				envKey[name] = k
			}
		}
		if envKey[name] == "" {
			t.Errorf("applyEnv reads %s but it changes no key", name)
		}
	}
	// VALISE_POSTGRES_DSN is not copied into the tree: it replaces the
	// file storage.postgres.dsn_file names (backend.ReadDSN), which
	// Validate then no longer requires.
	c := Default()
	c.Storage.Driver = "postgres"
	t.Setenv("VALISE_POSTGRES_DSN", "")
	without := fmt.Sprint(c.Validate(t.TempDir(), false))
	t.Setenv("VALISE_POSTGRES_DSN", "postgres://probe")
	with := fmt.Sprint(c.Validate(t.TempDir(), false))
	if !strings.Contains(without, "storage.postgres.dsn_file: is required") || strings.Contains(with, "storage.postgres.dsn_file") {
		t.Errorf("VALISE_POSTGRES_DSN does not stand in for storage.postgres.dsn_file:\nwithout: %s\nwith: %s", without, with)
	}
	envKey["VALISE_POSTGRES_DSN"] = "storage.postgres.dsn_file"

	for name, k := range envKey {
		if r := documented[k]; r.env != name {
			t.Errorf("%s: %s overrides %s, but the row of %s lists %q", referenceFile, name, k, k, r.env)
		}
	}
	for _, r := range rows {
		if r.env != "" && envKey[r.env] != r.key {
			t.Errorf("%s: %s is listed as overriding %s, but it does not", referenceFile, r.env, r.key)
		}
	}
}

// TestParseReferenceRefusesBadRows keeps the table parser strict, so a
// malformed row fails the reference test instead of being skipped.
func TestParseReferenceRefusesBadRows(t *testing.T) {
	wrap := func(row string) string {
		return "<!-- config-reference:begin -->\n| key | default | environment | meaning |\n|---|---|---|---|\n" + row + "\n<!-- config-reference:end -->"
	}
	for name, row := range map[string]string{
		"three cells":     "| `a` | `1` | — |",
		"unquoted key":    "| a | `1` | — | m |",
		"unquoted value":  "| `a` | 1 | — | m |",
		"missing meaning": "| `a` | `1` | — |  |",
	} {
		if _, err := parseReference(wrap(row)); err == nil {
			t.Errorf("%s: %q parsed", name, row)
		}
	}
	rows, err := parseReference(wrap("| `a.b` | `\"\"` | `VALISE_X` | m |"))
	if err != nil || len(rows) != 1 || rows[0] != (referenceRow{key: "a.b", def: `""`, env: "VALISE_X"}) {
		t.Errorf("good row: %+v, %v", rows, err)
	}
	if _, err := parseReference("no markers"); err == nil {
		t.Error("a document without markers parsed")
	}
}
