package sealbox

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := b.Seal([]byte("crop"), []byte("row-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("crop")) {
		t.Fatal("plaintext visible in the ciphertext")
	}
	if p, err := b.Open(sealed, []byte("row-1")); err != nil || string(p) != "crop" {
		t.Fatalf("open: %q %v", p, err)
	}
	other, _ := New(bytes.Repeat([]byte{8}, KeySize))
	cases := []struct {
		name   string
		box    *Box
		sealed []byte
		ad     string
	}{
		{"other row", b, sealed, "row-2"},
		{"other key", other, sealed, "row-1"},
		{"flipped byte", b, append(append([]byte{}, sealed[:len(sealed)-1]...), sealed[len(sealed)-1]^1), "row-1"},
		{"short", b, sealed[:10], "row-1"},
	}
	for _, c := range cases {
		if _, err := c.box.Open(c.sealed, []byte(c.ad)); err == nil {
			t.Errorf("%s: opened", c.name)
		}
	}
	if _, err := b.Open(sealed[:10], nil); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v, want ErrShort", err)
	}
	if _, err := New(key[:16]); err == nil {
		t.Error("a 16-byte key was taken")
	}
}
