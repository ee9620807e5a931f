//go:build !linux

// Command vminit is the init of the vmtest guest; it runs only on Linux.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "vminit: not supported on %s\n", runtime.GOOS)
	os.Exit(1)
}
