package conf

import (
	"strings"
	"testing"
)

func TestLogConfigValidate(t *testing.T) {
	if err := (LogConfig{Level: "debug", Format: "json"}).Validate("log"); err != nil {
		t.Fatal(err)
	}
	err := (LogConfig{Level: "loud"}).Validate("log")
	if err == nil || !strings.HasPrefix(err.Error(), "log.level") {
		t.Fatalf("got %v", err)
	}
	err = (LogConfig{Format: "xml"}).Validate("log")
	if err == nil || !strings.HasPrefix(err.Error(), "log.format") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("A_UNSET_VAR", "")
	t.Setenv("B_SET_VAR", "/x")
	s := "default"
	EnvOverride(&s, "A_UNSET_VAR", "B_SET_VAR")
	if s != "/x" {
		t.Fatalf("got %q", s)
	}
	t.Setenv("MODELS_DIR", "/m")
	if got := ResolveModelsDir("models"); got != "/m" {
		t.Fatalf("MODELS_DIR override: %q", got)
	}
}
