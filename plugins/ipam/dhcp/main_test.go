package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// binDir holds the dhcp binary built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if testenv.InVM() {
		// The guest has the plugins built in CNI_PATH, and no toolchain.
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
