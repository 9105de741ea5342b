package conf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ModuleRoot walks up from the working directory to the folder holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// TestDataDir returns the shared test data folder: $ATTENDANCE_TESTDATA, or
// ../shared/testdata next to the project root. It is an error (never a
// silent skip) when the folder is missing: tests that need it must fail.
func TestDataDir() (string, error) {
	dir := os.Getenv("ATTENDANCE_TESTDATA")
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "..", "shared", "testdata")
	}
	if _, err := os.Stat(filepath.Join(dir, "faces", "idols.json")); err != nil {
		return "", fmt.Errorf("test data not found at %s (set ATTENDANCE_TESTDATA): %w", dir, err)
	}
	return filepath.Abs(dir)
}

// TestModelsDir returns $MODELS_DIR or the project's models/ folder.
func TestModelsDir() string {
	if d := os.Getenv("MODELS_DIR"); d != "" {
		return d
	}
	root, err := ModuleRoot()
	if err != nil {
		return DefaultModelsDir
	}
	return filepath.Join(root, "models")
}

// BuildBinary compiles the module's main package pkg (e.g. "./hub") into
// out with `go build`, for tests that run the real binaries; the error
// carries the compiler's output.
func BuildBinary(pkg, out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
