package facetemplates

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diemdanh/diemdanh/hub/sealbox"
	"github.com/diemdanh/diemdanh/models/conf"
)

// KeyEnv is the environment variable that holds the template key (64 hex
// characters or base64 of 32 bytes). It overrides the key file.
const KeyEnv = "DIEMDANH_TEMPLATE_KEY"

// KeySize is the AES-256 key length in bytes.
const KeySize = sealbox.KeySize

// Config is the templates section of the hub config.
type Config struct {
	// KeyFile holds the 32-byte key (hex, base64 or raw). It is created
	// with mode 0600 on first start when missing and DIEMDANH_TEMPLATE_KEY
	// is not set. Keep a copy offline: without it templates are lost.
	KeyFile string `yaml:"key_file"`
	// Gate sets the gate templates: per-source cap, expiry, the pause
	// after "not this pupil" (gate.go).
	Gate GateConfig `yaml:"gate"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{KeyFile: "data/template.key"} }

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	if c.KeyFile == "" && os.Getenv(KeyEnv) == "" {
		return conf.Fieldf(prefix+".key_file", "is required (or set %s)", KeyEnv)
	}
	return c.Gate.Validate(prefix + ".gate")
}

// ParseKey decodes a key written as 64 hex characters, base64 of 32 bytes
// or 32 raw bytes.
func ParseKey(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	return nil, fmt.Errorf("templates: key must be %d bytes as 64 hex characters or base64 (got %d characters)", KeySize, len(s))
}

// LoadKey returns the key from DIEMDANH_TEMPLATE_KEY when set, otherwise
// from path, creating path with a fresh random key (mode 0600) when it does
// not exist. It never writes a key anywhere else.
func LoadKey(path string) ([]byte, error) {
	if v := os.Getenv(KeyEnv); v != "" {
		k, err := ParseKey([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyEnv, err)
		}
		return k, nil
	}
	if path == "" {
		return nil, fmt.Errorf("templates: no key: set %s or templates.key_file", KeyEnv)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, KeySize)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("templates: generate key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("templates: key file: %w", err)
		}
		if err := conf.WriteFileAtomic(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("templates: key file: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("templates: key file: %w", err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("templates: key file %s: %w", path, err)
	}
	return k, nil
}
