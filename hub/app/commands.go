package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	benchenrol "github.com/diemdanh/diemdanh/hub/bench/enrol"
	benchingest "github.com/diemdanh/diemdanh/hub/bench/ingest"
	benchlive "github.com/diemdanh/diemdanh/hub/bench/live"
	benchsync "github.com/diemdanh/diemdanh/hub/bench/sync"
	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/enrol"
)

// Command is one bin/hub subcommand.
type Command struct {
	Summary string
	Main    func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the dispatch table of bin/hub. Each helper adds ONE line for
// its subcommand (XxxMain lives in the helper's package).
func commands() map[string]Command {
	return map[string]Command{
		"run":           {"run the hub: hub run --config hub.yaml", RunMain},
		"demo":          {"start a demo hub and one gate (what `make run` runs)", DemoMain},
		"enrol":         {"bulk-enrol faces: hub enrol --roster roster.csv --photos DIR [--config hub.yaml]", enrol.EnrolCommand(loadEnrol)},
		"bench-enrol":   {"benchmark bulk enrolment (photos/s, p95, RSS): hub bench-enrol --json", benchenrol.BenchEnrolMain},
		"bench-ingest":  {"MQTT→SQLite ingest rate and latency: hub bench-ingest --events N --publishers P [--external] --json", benchingest.BenchIngestMain},
		"bench-live":    {"live board fan-out: hub bench-live --clients 500 --json (SSE push latency, RSS)", benchlive.BenchLiveMain},
		"mosquitto-acl": {"external broker: write mosquitto's ACL for the gates: hub mosquitto-acl --db data/hub.db --out acl", broker.MosquittoACLMain},
		"bench-sync":    {"city sync push rate, catch-up and city-peak simulation: hub bench-sync --rows N --json", benchsync.BenchSyncMain},
	}
}

// ErrUsage marks a command-line error (exit status 2).
var ErrUsage = errors.New("usage")

// Main is bin/hub's main: it dispatches args[0] and returns the exit code.
// The first SIGINT/SIGTERM cancels the context (clean shutdown); a second
// one forces exit.
func Main(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) < 1 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "hub: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	ctx, stop := SignalContext(context.Background(), stderr, func() { os.Exit(130) })
	defer stop()
	if err := cmd.Main(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "hub %s: %v\n", args[0], err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// SignalContext returns a context cancelled by the first SIGINT/SIGTERM;
// the second one calls force (exit).
func SignalContext(parent context.Context, stderr io.Writer, force func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-done:
			return
		}
		fmt.Fprintln(stderr, "hub: stopping (press Ctrl-C again to force)")
		cancel()
		select {
		case <-ch:
			fmt.Fprintln(stderr, "hub: forced exit")
			force()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

func usage(w io.Writer, cmds map[string]Command) {
	fmt.Fprintln(w, "usage: hub <command> [flags]")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, cmds[n].Summary)
	}
}

// RunMain is `hub run --config FILE [--http ADDR]`.
func RunMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file (defaults when empty)")
	httpAddr := fs.String("http", "", "HTTP listen address (overrides http.addr)")
	if err := fs.Parse(args); err != nil {
		return errors.Join(ErrUsage, err)
	}
	cfg, err := Load(*path)
	if err != nil {
		return err
	}
	if *httpAddr != "" {
		cfg.HTTP.Addr = *httpAddr
	}
	log := newLogger(cfg, stderr)
	a, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// loadEnrol is the enrol section of the hub config at path, for `hub enrol
// --config` (validated as `hub run` does).
func loadEnrol(path string) (enrol.Config, error) {
	c, err := Load(path)
	return c.Enrol, err
}
