package app

import (
	"context"
	"io"

	"github.com/diemdanh/diemdanh/edge/sim"
)

// cmdSimulate runs the synthetic gate simulator (edge/sim).
func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return sim.Main(ctx, args, stdout, stderr)
}
