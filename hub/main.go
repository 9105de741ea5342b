// Command hub is the school server. See hub/app.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "hub: not built yet")
	os.Exit(2)
}
