package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// crashExit is the exit code of a child process killed at a crash point.
const crashExit = 42

func TestMain(m *testing.M) {
	if dataDir := os.Getenv("HOSTLOCAL_CRASH_DATADIR"); dataDir != "" {
		os.Exit(crashChild(dataDir, os.Getenv("HOSTLOCAL_CRASH_OP"), os.Getenv("HOSTLOCAL_CRASH_AT")))
	}
	os.Exit(m.Run())
}

// crashChild runs one store operation and exits the process, with no
// deferred cleanup and the lock released by the kernel, on reaching the
// point at: as if killed there.
func crashChild(dataDir, op, at string) int {
	s, err := New(dataDir, "net", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s.step = func(point string) {
		if point == at {
			os.Exit(crashExit)
		}
	}
	if err := s.Lock(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch op {
	case "reserve":
		_, err = s.Reserve(owner("new"), ip("10.0.0.50"), "0")
	case "release":
		_, err = s.Release(owner("a"))
	case "release-ip":
		_, err = s.ReleaseIP(ip("10.0.0.4"), owner("b"))
	case "rebuild":
		_, err = s.Lookup(owner("a"))
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	err = errors.Join(err, s.Unlock())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestCrashSafety kills a process at every point between two writes of
// each operation and checks that the store is consistent afterwards: every
// lease file is whole and, while the index claims to be current, listed by
// its owner's entry; the next user repairs the index and finishes the job.
func TestCrashSafety(t *testing.T) {
	tests := []struct {
		op     string
		points []string
		// after finishes the interrupted operation and checks the result.
		after func(t *testing.T, s *Store)
	}{
		{
			op: "reserve",
			points: []string{"reserve:lease-temp-written", "reserve:entry-written", "reserve:lease-created",
				"reserve:done", "stamp:start", "stamp:mtime-set"},
			after: func(t *testing.T, s *Store) {
				locked(t, s, func() {
					if _, err := s.Reserve(owner("new"), ip("10.0.0.50"), "0"); err != nil {
						t.Fatal(err)
					}
					got, err := s.Lookup(owner("new"))
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(ips("10.0.0.50"), got, addrCmp); diff != "" {
						t.Errorf("Lookup(new) (-want +got):\n%s", diff)
					}
				})
			},
		},
		{
			op:     "release",
			points: []string{"release:lease-removed", "stamp:start", "stamp:mtime-set"},
			after: func(t *testing.T, s *Store) {
				locked(t, s, func() {
					if _, err := s.Release(owner("a")); err != nil {
						t.Fatal(err)
					}
					if got, err := s.Lookup(owner("a")); err != nil || len(got) != 0 {
						t.Errorf("Lookup(a) after release = %v, %v", got, err)
					}
				})
				if _, err := os.Stat(s.entryPath(owner("a"))); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("entry of a still exists after release: %v", err)
				}
			},
		},
		{
			op:     "release-ip",
			points: []string{"release-ip:lease-removed", "stamp:mtime-set"},
			after: func(t *testing.T, s *Store) {
				locked(t, s, func() {
					if _, err := s.ReleaseIP(ip("10.0.0.4"), owner("b")); err != nil {
						t.Fatal(err)
					}
					if got, err := s.Lookup(owner("b")); err != nil || len(got) != 0 {
						t.Errorf("Lookup(b) after release = %v, %v", got, err)
					}
				})
			},
		},
		{
			op:     "rebuild",
			points: []string{"reconcile:entry-written", "reconcile:entry-removed", "stamp:mtime-set"},
			after: func(t *testing.T, s *Store) {
				locked(t, s, func() {
					for id, want := range map[string][]string{"a": {"10.0.0.2", "10.0.0.3"}, "b": nil, "c": {"10.0.0.9"}} {
						got, err := s.Lookup(owner(id))
						if err != nil {
							t.Fatal(err)
						}
						if diff := cmp.Diff(ips(want...), got, addrCmp); diff != "" {
							t.Errorf("Lookup(%s) (-want +got):\n%s", id, diff)
						}
					}
				})
			},
		},
	}
	for _, tt := range tests {
		for _, point := range tt.points {
			t.Run(tt.op+"/"+point, func(t *testing.T) {
				s := newStore(t)
				reserve(t, s, owner("a"), "10.0.0.2", "0")
				reserve(t, s, owner("a"), "10.0.0.3", "0")
				reserve(t, s, owner("b"), "10.0.0.4", "0")
				if tt.op == "rebuild" {
					// The reference plugin adds a lease and releases b's:
					// the index is stale.
					writeReferenceLease(t, s.dir, "10.0.0.9", "c\r\neth0")
					if err := os.Remove(filepath.Join(s.dir, "10.0.0.4")); err != nil {
						t.Fatal(err)
					}
				}
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(),
					"HOSTLOCAL_CRASH_DATADIR="+filepath.Dir(s.dir),
					"HOSTLOCAL_CRASH_OP="+tt.op,
					"HOSTLOCAL_CRASH_AT="+point)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != crashExit {
					t.Fatalf("child did not crash at %s: %v\n%s", point, err, out)
				}
				checkAfterCrash(t, s)
				checkConsistent(t, s)
				tt.after(t, s)
				checkConsistent(t, s)
			})
		}
	}
}

// checkAfterCrash inspects the directory as a crash left it, before any
// repair: every lease file holds a whole owner record, and if the stamp
// says the index is current then every lease is listed by its owner's entry.
func checkAfterCrash(t *testing.T, s *Store) {
	t.Helper()
	names, err := s.names()
	if err != nil {
		t.Fatal(err)
	}
	current, err := s.stampMatches()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		a, ok := leaseName(n)
		if !ok {
			continue
		}
		o, _, err := s.owner(a)
		if err != nil {
			t.Fatal(err)
		}
		if o.ContainerID == "" || o.IfName == "" {
			t.Errorf("lease %s has a partial owner record %+v", n, o)
		}
		if !current {
			continue
		}
		listed, err := s.readEntry(o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(listed, a) {
			t.Errorf("lease %s of %+v has no index entry, and the index claims to be current", n, o)
		}
	}
}
