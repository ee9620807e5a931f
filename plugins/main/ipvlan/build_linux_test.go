//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
// huge page faults they took, allocated or fallen back. The copies run in
// a memory cgroup of their own, whose counters (memory.stat) count their
// faults alone: the system's (/proc/vmstat) also count this test
// process's, whose heap grows as it runs them.
func hugePageFaults(t *testing.T, n int, cmd *exec.Cmd) int {
	t.Helper()
	const root = "/sys/fs/cgroup"
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
		t.Fatalf("enable the memory controller under %s: %v", root, err)
	}
	dir, err := os.MkdirTemp(root, "thp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	for range n {
		c := exec.Command(cmd.Path, cmd.Args[1:]...)
		c.Env = cmd.Env
		c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", c, err, out)
		}
	}
	return thpFaults(t, filepath.Join(dir, "memory.stat"))
}

// thpFaults sums thp_fault_alloc and, where the kernel counts it,
// thp_fault_fallback of a memory.stat file.
func thpFaults(t *testing.T, stat string) int {
	t.Helper()
	b, err := os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	total, seen := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k == "thp_fault_alloc" || k == "thp_fault_fallback" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %q: %v", stat, line, err)
			}
			total += n
			seen = seen || k == "thp_fault_alloc"
		}
	}
	if !seen {
		t.Fatalf("%s has no thp_fault_alloc", stat)
	}
	return total
}
