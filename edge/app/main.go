package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
)

const usage = `usage: edge <command> [flags]

commands:
  run --config FILE                         the gate service
  gallery build --photos DIR --out FILE     build a gallery file from DIR/<student_id>/*.jpg|png
  identify --gallery FILE IMAGE...          one JSON line per face found
  simulate --photos DIR --out VIDEO --truth FILE --gallery-out FILE [--seed N]
  eval ...                                  recognition evaluation harness
  bench --video V --truth T --gallery G --json
  bench --suite DIR/suite.json [--baseline] [--peer] --json
`

// Main runs the edge command line and returns the exit code: 0 success,
// 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "gallery":
		if len(args) < 2 || args[1] != "build" {
			err = usageErr("edge gallery build --photos DIR --out FILE")
		} else {
			err = cmdGalleryBuild(ctx, args[2:], stdout, stderr)
		}
	case "identify":
		err = cmdIdentify(ctx, args[1:], stdout, stderr)
	case "simulate":
		err = cmdSimulate(ctx, args[1:], stdout, stderr)
	case "eval":
		err = cmdEval(ctx, args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout, stderr)
	default:
		err = usageErr("unknown command %q", args[0])
	}
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "edge: %v\n\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "edge: %v\n", err)
		return 1
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	path := fs.String("config", "", "config file (YAML)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageErr("run needs --config FILE")
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", *path, err)
	}
	log := conf.NewLogger(cfg.Log, stderr)
	a, err := New(cfg, log, time.Now)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

// engineConfig builds an engine config from an optional --config file
// and MODELS_DIR, and gives the vote the model's distance profiles (a
// custom model without a profile is refused).
func engineConfig(path string) (faceengine.EngineConfig, Config, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return cfg.Engine, cfg, err
	}
	if err := cfg.Engine.Validate("engine"); err != nil {
		return cfg.Engine, cfg, err
	}
	cfg.Pipeline.Vote.Profiles, err = cfg.Engine.Profiles("engine")
	return cfg.Engine, cfg, err
}

func isImage(name string) bool {
	n := strings.ToLower(name)
	return strings.HasSuffix(n, ".jpg") || strings.HasSuffix(n, ".jpeg") || strings.HasSuffix(n, ".png")
}
