package app

import (
	"io"
	"log/slog"

	"github.com/diemdanh/diemdanh/models/gatekit"
)

func newLogger(cfg Config, w io.Writer) *slog.Logger { return gatekit.NewLogger(cfg.Log, w) }
