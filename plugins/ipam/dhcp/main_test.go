package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the dhcp binary built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// In the VM guest (testenv.InVM, not imported here: it is Linux only)
	// the plugins are built in CNI_PATH, and there is no toolchain.
	if os.Getenv("VMTEST") == "1" {
		binDir = os.Getenv("CNI_PATH")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "dhcp-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "dhcp"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build dhcp: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}
