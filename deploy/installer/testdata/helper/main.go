// Command helper stands in for a CNI plugin in the installer's tests. Run
// without arguments it prints its version; with "serve" it prints
// "<version> ready", then answers each line read on stdin with
// "<version> <line>" until stdin closes. The tests link two versions
// (-ldflags=-X=main.version=...) to tell an old file from a new one.
package main

import (
	"bufio"
	"fmt"
	"os"
)

// version is set at link time.
var version = "unset"

func main() {
	if len(os.Args) < 2 {
		fmt.Println(version)
		return
	}
	if os.Args[1] != "serve" {
		fmt.Fprintf(os.Stderr, "helper: unknown argument %q\n", os.Args[1])
		os.Exit(2)
	}
	fmt.Println(version, "ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println(version, sc.Text())
	}
}
