package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGuestMountsCgroup2First checks that the guest's mount table starts
// like a container host's: cgroup2 mounted before any netns bind mount.
// A Go program (the plugins, the bench's floor) reads /proc/self/mountinfo
// at start up to the first cgroup2 line; without it, every start would read
// the whole table, a line per container, and the VM would measure a cost no
// real host pays.
func TestGuestMountsCgroup2First(t *testing.T) {
	if !InVM() {
		t.Skip("describes the vmtest guest (make test runs it there)")
	}
	RequireKernel(t)
	n := NewNS(t)

	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	cgroup, netns := -1, -1
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			t.Fatalf("mountinfo line %d is malformed: %q", i+1, line)
		}
		_, after, ok := strings.Cut(line, " - ")
		if ok && strings.HasPrefix(after, "cgroup2 ") && cgroup < 0 {
			cgroup = i
		}
		if strings.HasSuffix(fields[4], "/"+filepath.Base(n.Path())) && netns < 0 {
			netns = i
		}
	}
	switch {
	case cgroup < 0:
		t.Fatalf("no cgroup2 mount in the guest:\n%s", data)
	case netns < 0:
		t.Fatalf("the test's netns %s is not in mountinfo:\n%s", n.Path(), data)
	case cgroup > netns:
		t.Errorf("cgroup2 is mount %d, after the netns bind mount (%d)", cgroup+1, netns+1)
	}
}

// TestGuestClockIsTSC checks that the guest keeps time with the TSC, as
// hardware does (see kernelCmdline in internal/vmtest): on the emulated
// HPET every clock read of a plugin, and of the kernel, would be a device
// access, and the VM would measure a cost no real host pays. It also
// checks that the clock never goes backwards across the guest's CPUs,
// which is what the kernel is told to assume.
func TestGuestClockIsTSC(t *testing.T) {
	if !InVM() {
		t.Skip("describes the vmtest guest (make test runs it there)")
	}
	const source = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
	b, err := os.ReadFile(source)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "tsc" {
		t.Fatalf("%s = %q, want tsc", source, got)
	}
	// Two threads, each pinned to a CPU of its own, hand one reading back
	// and forth: each must find the other's last reading at or before its
	// own.
	if runtime.NumCPU() < 2 {
		t.Fatalf("the guest has %d CPU, want 2 or more", runtime.NumCPU())
	}
	var (
		mu      sync.Mutex
		last    int64
		behind  int
		readers sync.WaitGroup
	)
	for cpu := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			// Never unlocked: the pinned thread exits with the goroutine
			// instead of going back to the runtime's pool.
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				t.Errorf("pin a thread to CPU %d: %v", cpu, err)
				return
			}
			for range 100000 {
				mu.Lock()
				now := nanotime()
				if now < last {
					behind++
				}
				last = now
				mu.Unlock()
			}
		}()
	}
	readers.Wait()
	if behind > 0 {
		t.Errorf("CLOCK_MONOTONIC went backwards %d times between the guest's CPUs", behind)
	}
}

// nanotime reads CLOCK_MONOTONIC, as the Go runtime and the kernel's
// timers do.
func nanotime() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}
