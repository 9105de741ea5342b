// Command edge is the gate device service. See edge/app.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/diemdanh/diemdanh/edge/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
