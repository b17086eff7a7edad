package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestSealerRoundTrip(t *testing.T) {
	s, err := newSealer([]byte("pass"), fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"secret":"value"}`)
	a, err := s.seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.seal(plain)
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are equal; want a fresh nonce each")
	}
	if bytes.Contains(a, []byte("secret")) {
		t.Error("sealed file contains the plaintext")
	}
	other, err := sealerFor([]byte("pass"), a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.open(b)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open = %q, %v; want %q", got, err, plain)
	}
	wrong, _ := sealerFor([]byte("Pass"), a)
	if _, err := wrong.open(a); !errors.Is(err, ErrPassphrase) {
		t.Errorf("wrong passphrase: err = %v, want ErrPassphrase", err)
	}
	// A file sealed under a new salt (another login) opens too.
	s2, _ := newSealer([]byte("pass"), fastKDF)
	c, _ := s2.seal(plain)
	if got, err := other.open(c); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("open after a new salt = %q, %v", got, err)
	}
}

func TestSealerRejectsTampering(t *testing.T) {
	s, _ := newSealer([]byte("pass"), fastKDF)
	file, _ := s.seal([]byte("plain"))
	tests := []struct {
		name   string
		change func([]byte) []byte
	}{
		{"ciphertext bit", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"nonce bit", func(b []byte) []byte { b[sealHeaderLen-1] ^= 1; return b }},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"version", func(b []byte) []byte { b[4] = 9; return b }},
		{"huge time", func(b []byte) []byte { binary.BigEndian.PutUint32(b[5:9], 1<<30); return b }},
		{"huge memory", func(b []byte) []byte { binary.BigEndian.PutUint32(b[9:13], 1<<31); return b }},
		{"zero threads", func(b []byte) []byte { b[13] = 0; return b }},
		{"truncated", func(b []byte) []byte { return b[:sealHeaderLen] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.change(bytes.Clone(file))
			if _, err := s.open(f); err == nil {
				t.Error("tampered file opened")
			}
		})
	}
}
