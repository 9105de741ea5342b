package conf

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is a configuration or payload validation error that names the
// offending field by its YAML/JSON path, e.g. "mqtt.broker".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Fieldf builds a *FieldError.
func Fieldf(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// LoadYAML reads path and decodes it strictly (unknown keys are errors) into
// dst, which should already hold the defaults. An empty path leaves dst as it is.
func LoadYAML(path string, dst any) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return DecodeYAML(b, dst)
}

// DecodeYAML decodes b strictly into dst.
func DecodeYAML(b []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && err != io.EOF {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// EnvOverride sets *dst to the value of the first non-empty environment
// variable among names. It is how paths (models, data, test data) are
// overridden without editing a config file.
func EnvOverride(dst *string, names ...string) {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			*dst = v
			return
		}
	}
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Validate checks the log settings.
func (c LogConfig) Validate(prefix string) error {
	switch strings.ToLower(c.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		return Fieldf(prefix+".level", "must be debug, info, warn or error, got %q", c.Level)
	}
	switch c.Format {
	case "", "text", "json":
	default:
		return Fieldf(prefix+".format", "must be text or json, got %q", c.Format)
	}
	return nil
}

// NewLogger builds the one *slog.Logger a binary passes to its components.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(orDefault(c.Level, "info"))))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
