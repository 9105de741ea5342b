package app

import (
	"context"
	"errors"
	"io"
)

// cmdSimulate runs the synthetic gate simulator (edge/sim).
func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("simulate: the gate simulator is not built into this binary yet")
}
