package cliutil

import (
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		name string
		args []string
		pos  []string
		all  bool
	}{
		{"flag first", []string{"--all", "alice"}, []string{"alice"}, true},
		{"flag last", []string{"alice", "--all"}, []string{"alice"}, true},
		{"between", []string{"a", "--all", "b"}, []string{"a", "b"}, true},
		{"after dashes", []string{"a", "--", "--all"}, []string{"a", "--all"}, false},
		{"none", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFlagSet("t")
			all := fs.Bool("all", false, "")
			pos, err := ParseInterleaved(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.pos) || *all != tt.all {
				t.Fatalf("got %q all=%v, want %q all=%v", pos, *all, tt.pos, tt.all)
			}
		})
	}
}

func TestFlagError(t *testing.T) {
	if err := FlagError(flag.ErrHelp); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("ErrHelp became %v", err)
	}
	var ue *UsageError
	if err := FlagError(errors.New("bad flag")); !errors.As(err, &ue) {
		t.Fatalf("got %T, want *UsageError", err)
	}
}

func TestReadFirstLine(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"secret\n", "secret", true},
		{"secret\r\nmore", "secret", true},
		{"no newline", "no newline", true},
		{"  spaces kept \n", "  spaces kept ", true},
		{"\n", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := ReadFirstLine(strings.NewReader(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ReadFirstLine(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
