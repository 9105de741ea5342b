// Command edge is the gate device service. See edge/app.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "edge: not built yet")
	os.Exit(2)
}
