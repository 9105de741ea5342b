package app

import (
	"io"
	"log/slog"

	"github.com/diemdanh/diemdanh/models/conf"
)

func newLogger(cfg Config, w io.Writer) *slog.Logger { return conf.NewLogger(cfg.Log, w) }
