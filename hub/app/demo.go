package app

import (
	"context"
	"errors"
	"io"
)

// DemoMain is `hub demo` (what `make run` runs). See demo.go.
func DemoMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("demo: not built yet")
}
