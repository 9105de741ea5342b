package imagecheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
)

// TestSniffAcceptsEveryTestImage: the completeness check refuses none of
// the 2,600 real photos of the test data (JPEG, PNG and BMP from phones,
// cameras, the web and datasets).
func TestSniffAcceptsEveryTestImage(t *testing.T) {
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".jpg", ".jpeg", ".png", ".bmp":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := Sniff(b, Limits{})
		if err != nil {
			t.Errorf("%s: %v", path, err)
		}
		n[info.Format]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n["jpeg"] < 2000 || n["png"] < 5 || n["bmp"] < 100 {
		t.Fatalf("test data incomplete: %v", n)
	}
	t.Logf("images checked: %v", n)
}
