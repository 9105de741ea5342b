// Command hub is the school server. See hub/app.
package main

import (
	"os"

	"github.com/diemdanh/diemdanh/hub/app"
)

func main() { os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr)) }
