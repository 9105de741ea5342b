package conf

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestFileSHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	b := []byte("ảnh học sinh")
	if err := WriteFileAtomic(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got, err := FileSHA256(p); err != nil || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("FileSHA256 = %q, %v; want %x", got, err, sum)
	}
	if _, err := FileSHA256(p + ".missing"); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}
