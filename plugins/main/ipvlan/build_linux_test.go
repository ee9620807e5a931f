//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// TestPluginsTakeNoHugePages: the plugins are built so that their Go heap
// never takes a transparent huge page (vmtest.PluginLDFlags), so on a kernel
// whose THP mode is "always" running them causes no huge page fault, while
// a Go binary built without the flag (this test binary) does.
//
// The kernel's counters are global: the test must not run in parallel.
func TestPluginsTakeNoHugePages(t *testing.T) {
	testenv.RequireKernel(t)
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		t.Skipf("no transparent huge pages: %v", err)
	}
	if !strings.Contains(string(mode), "[always]") {
		t.Skipf("transparent huge pages are %q here, not always", strings.TrimSpace(string(mode)))
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if n := hugePageFaults(t, 3, exec.Command(self, "-test.run=^$")); n == 0 {
		t.Fatal("3 runs of the test binary, built without the flag, took no huge page fault: the counters cannot tell")
	}
	for _, name := range []string{"ipvlan", "host-local"} {
		cmd := exec.Command(filepath.Join(testenv.PluginDir(t), name))
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		if n := hugePageFaults(t, 5, cmd); n != 0 {
			t.Errorf("%s VERSION, 5 runs: %d huge page faults, want 0", name, n)
		}
	}
}

// hugePageFaults runs a copy of cmd n times and returns how many anonymous
// huge page faults the kernel counted meanwhile, allocated or fallen back.
func hugePageFaults(t *testing.T, n int, cmd *exec.Cmd) int {
	t.Helper()
	before := thpFaults(t)
	for range n {
		c := exec.Command(cmd.Path, cmd.Args[1:]...)
		c.Env = cmd.Env
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", c, err, out)
		}
	}
	return thpFaults(t) - before
}

func thpFaults(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	total, seen := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k == "thp_fault_alloc" || k == "thp_fault_fallback" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("/proc/vmstat: %q: %v", line, err)
			}
			total, seen = total+n, seen+1
		}
	}
	if seen != 2 {
		t.Fatal("/proc/vmstat: no thp_fault_alloc and thp_fault_fallback")
	}
	return total
}
