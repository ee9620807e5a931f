package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
