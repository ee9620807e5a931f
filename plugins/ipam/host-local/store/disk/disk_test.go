package disk

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

var addrCmp = cmp.Comparer(func(x, y netip.Addr) bool { return x == y })

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func ips(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, ip(s))
	}
	return out
}

func owner(id string) store.Attachment { return store.NewAttachment(id, "eth0") }

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := New(t.TempDir(), "net", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// locked runs fn holding the lock.
func locked(t testing.TB, s *Store, fn func()) {
	t.Helper()
	if err := s.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	fn()
	if err := s.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func reserve(t testing.TB, s *Store, o store.Attachment, addr, rangeID string) {
	t.Helper()
	locked(t, s, func() {
		ok, err := s.Reserve(o, ip(addr), rangeID)
		if err != nil || !ok {
			t.Fatalf("Reserve(%v, %s) = %v, %v; want true, nil", o, addr, ok, err)
		}
	})
}

// writeReferenceLease writes a lease exactly as the reference plugin does.
func writeReferenceLease(t testing.TB, dir, addr, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, addr), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoreOperations(t *testing.T) {
	s := newStore(t)
	reserve(t, s, owner("a"), "10.0.0.2", "0")
	reserve(t, s, owner("a"), "fd00::2", "1")
	reserve(t, s, owner("b"), "10.0.0.3", "0")
	locked(t, s, func() {
		if ok, err := s.Reserve(owner("c"), ip("10.0.0.3"), "0"); ok || err != nil {
			t.Errorf("Reserve of a taken address = %v, %v; want false, nil", ok, err)
		}
		got, err := s.Lookup(owner("a"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ips("10.0.0.2", "fd00::2"), got, addrCmp); diff != "" {
			t.Errorf("Lookup(a) (-want +got):\n%s", diff)
		}
		last, err := s.LastReservedIP("0")
		if err != nil || last != ip("10.0.0.3") {
			t.Errorf("LastReservedIP(0) = %v, %v; want 10.0.0.3", last, err)
		}
		if last, err := s.LastReservedIP("7"); err != nil || last.IsValid() {
			t.Errorf("LastReservedIP(7) = %v, %v; want zero", last, err)
		}
		leases, err := s.Leases()
		if err != nil {
			t.Fatal(err)
		}
		want := []store.Lease{
			{IP: ip("10.0.0.2"), Owner: owner("a")},
			{IP: ip("10.0.0.3"), Owner: owner("b")},
			{IP: ip("fd00::2"), Owner: owner("a")},
		}
		if diff := cmp.Diff(want, leases, addrCmp); diff != "" {
			t.Errorf("Leases (-want +got):\n%s", diff)
		}
		if ok, err := s.ReleaseIP(ip("10.0.0.3"), owner("a")); ok || err != nil {
			t.Errorf("ReleaseIP by a non-owner = %v, %v; want false, nil", ok, err)
		}
		if ok, err := s.ReleaseIP(ip("fd00::2"), owner("a")); !ok || err != nil {
			t.Errorf("ReleaseIP by the owner = %v, %v; want true, nil", ok, err)
		}
		got, err = s.Release(owner("a"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ips("10.0.0.2"), got, addrCmp); diff != "" {
			t.Errorf("Release(a) (-want +got):\n%s", diff)
		}
		if got, err := s.Release(owner("a")); err != nil || len(got) != 0 {
			t.Errorf("second Release(a) = %v, %v; want nothing", got, err)
		}
		reserved, err := s.Reserved()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ips("10.0.0.3"), reserved, addrCmp); diff != "" {
			t.Errorf("Reserved (-want +got):\n%s", diff)
		}
	})
	checkConsistent(t, s)
}

func TestUnlockedUseFails(t *testing.T) {
	s := newStore(t)
	if _, err := s.Reserve(owner("a"), ip("10.0.0.2"), "0"); err == nil {
		t.Error("Reserve without the lock succeeded")
	}
	if _, err := s.Lookup(owner("a")); err == nil {
		t.Error("Lookup without the lock succeeded")
	}
}

func TestNewRejectsBadNetworkNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", `a\b`} {
		if _, err := New(t.TempDir(), name, nil); err == nil {
			t.Errorf("New(%q) succeeded", name)
		}
	}
}

func TestEntryNames(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		owner store.Attachment
		want  string
	}{
		{owner("abc123"), "abc123+eth0"},
		{store.Attachment{ContainerID: "a.b_c-d", IfName: "eth0.100"}, "a.b_c-d+eth0.100"},
		{store.Attachment{ContainerID: ".hidden", IfName: "a+b"}, "%2Ehidden+a%2Bb"},
		{store.Attachment{ContainerID: "a/b", IfName: "%"}, "a%2Fb+%25"},
		{store.Attachment{ContainerID: "legacy"}, "legacy+"},
	}
	for _, tt := range tests {
		if got := entryName(tt.owner); got != tt.want {
			t.Errorf("entryName(%+v) = %q, want %q", tt.owner, got, tt.want)
		}
	}
	if got := entryName(store.Attachment{ContainerID: long, IfName: "eth0"}); !strings.HasPrefix(got, "=") || len(got) != 33 {
		t.Errorf("entryName(long) = %q, want =<FNV-1a 128 hex>", got)
	}
}

func TestLongContainerID(t *testing.T) {
	s := newStore(t)
	o := owner(strings.Repeat("0123456789", 40))
	reserve(t, s, o, "10.0.0.9", "0")
	locked(t, s, func() {
		got, err := s.Lookup(o)
		if err != nil || len(got) != 1 || got[0] != ip("10.0.0.9") {
			t.Errorf("Lookup(long id) = %v, %v", got, err)
		}
	})
	checkConsistent(t, s)
}

// TestIndexRebuild shows that a missing, stale or damaged index is rebuilt
// from the lease files before it is used.
func TestIndexRebuild(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, s *Store)
		want   map[string][]netip.Addr // lookups after the damage
	}{
		{
			name:   "index missing",
			damage: func(t *testing.T, s *Store) { os.RemoveAll(s.index) },
			want:   map[string][]netip.Addr{"a": ips("10.0.0.2"), "b": ips("10.0.0.3")},
		},
		{
			name:   "stamp missing",
			damage: func(t *testing.T, s *Store) { os.Remove(filepath.Join(s.index, stampName)) },
			want:   map[string][]netip.Addr{"a": ips("10.0.0.2"), "b": ips("10.0.0.3")},
		},
		{
			name: "stamp garbage",
			damage: func(t *testing.T, s *Store) {
				os.WriteFile(filepath.Join(s.index, stampName), []byte("junk"), 0o600)
			},
			want: map[string][]netip.Addr{"a": ips("10.0.0.2"), "b": ips("10.0.0.3")},
		},
		{
			name: "reference plugin added a lease",
			damage: func(t *testing.T, s *Store) {
				writeReferenceLease(t, s.dir, "10.0.0.7", "c\r\neth0")
			},
			want: map[string][]netip.Addr{"a": ips("10.0.0.2"), "c": ips("10.0.0.7")},
		},
		{
			name: "reference plugin released a lease and another took the address",
			damage: func(t *testing.T, s *Store) {
				os.Remove(filepath.Join(s.dir, "10.0.0.2"))
				writeReferenceLease(t, s.dir, "10.0.0.2", "c\r\neth0")
			},
			want: map[string][]netip.Addr{"a": nil, "c": ips("10.0.0.2")},
		},
		{
			name: "corrupt entry",
			damage: func(t *testing.T, s *Store) {
				os.Remove(s.entryPath(owner("a")))
				os.WriteFile(s.entryPath(owner("a")), []byte("10.0.0.2"), 0o600)
			},
			want: map[string][]netip.Addr{"a": ips("10.0.0.2"), "b": ips("10.0.0.3")},
		},
		{
			name: "entry naming garbage",
			damage: func(t *testing.T, s *Store) {
				os.Remove(s.entryPath(owner("a")))
				os.Symlink("10.0.0.2,junk", s.entryPath(owner("a")))
			},
			want: map[string][]netip.Addr{"a": ips("10.0.0.2"), "b": ips("10.0.0.3")},
		},
		{
			name: "index of an earlier version in the network directory",
			damage: func(t *testing.T, s *Store) {
				old := filepath.Join(s.dir, ".index")
				os.Mkdir(old, 0o755)
				os.WriteFile(filepath.Join(old, "a+eth0"), []byte("# host-local index entry v1\n{}"), 0o600)
			},
			want: map[string][]netip.Addr{"a": ips("10.0.0.2"), "b": ips("10.0.0.3")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			reserve(t, s, owner("a"), "10.0.0.2", "0")
			reserve(t, s, owner("b"), "10.0.0.3", "0")
			tt.damage(t, s)
			locked(t, s, func() {
				for id, want := range tt.want {
					got, err := s.Lookup(owner(id))
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(want, got, addrCmp); diff != "" {
						t.Errorf("Lookup(%s) (-want +got):\n%s", id, diff)
					}
				}
			})
			checkConsistent(t, s)
		})
	}
}

// TestStaleWithinOneClockTick has another program change the directory so
// that the kernel stamps it with the very mtime our own last change got, as
// happens when both fall in one timestamp tick, and checks the change is
// still seen.
func TestStaleWithinOneClockTick(t *testing.T) {
	s := newStore(t)
	var ours time.Time // the mtime of our last change, before the stamp
	s.step = func(point string) {
		if point == "stamp:start" {
			fi, err := os.Stat(s.dir)
			if err != nil {
				t.Fatal(err)
			}
			ours = fi.ModTime()
		}
	}
	for i := range 20 {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + 2*i)})
		reserve(t, s, owner("ours"), a.String(), "0")
		theirs := a.Next()
		writeReferenceLease(t, s.dir, theirs.String(), "theirs\r\neth0")
		if err := os.Chtimes(s.dir, time.Time{}, ours); err != nil {
			t.Fatal(err)
		}
		locked(t, s, func() {
			got, err := s.Lookup(owner("theirs"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(got, theirs) {
				t.Fatalf("round %d: lease %s written in the same tick as our change is not in the index", i, theirs)
			}
		})
	}
}

// checkConsistent asserts that the index, once the store has checked it,
// lists every lease under its owner and no owner without a lease, and that
// no temp file is left.
func checkConsistent(t testing.TB, s *Store) {
	t.Helper()
	locked(t, s, func() {
		leases, err := s.Leases()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			got, err := s.Lookup(l.Owner)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(got, l.IP) {
				t.Errorf("lease %s of %+v is missing from the index (lookup %v)", l.IP, l.Owner, got)
			}
		}
	})
	// And the index holds no entry of an owner without a lease.
	owners := map[string]bool{stampName: true}
	locked(t, s, func() {
		leases, err := s.Leases()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			owners[entryName(l.Owner)] = true
		}
	})
	if _, err := os.Stat(filepath.Join(s.dir, ".index")); err == nil {
		t.Error("index of an earlier version left in the network directory")
	}
	names, err := listNames(s.index)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !owners[n] {
			t.Errorf("index entry %s left without a lease", n)
		}
	}
	for _, d := range []string{s.dir, s.index} {
		names, _ := filepath.Glob(filepath.Join(d, tmpPrefix+"*"))
		if len(names) > 0 {
			t.Errorf("temp files left: %v", names)
		}
	}
}

// TestReserveUndoesOnFailure makes the last step of a reservation fail and
// checks that neither the lease nor its index entry stays.
func TestReserveUndoesOnFailure(t *testing.T) {
	s := newStore(t)
	reserve(t, s, owner("a"), "10.0.0.2", "0")
	// A directory where the last-reserved record goes: replacing it fails.
	if err := os.Mkdir(filepath.Join(s.dir, lastReservedPrefix+"1"), 0o755); err != nil {
		t.Fatal(err)
	}
	locked(t, s, func() {
		if ok, err := s.Reserve(owner("a"), ip("10.0.0.3"), "1"); ok || err == nil {
			t.Fatalf("Reserve = %v, %v; want failure", ok, err)
		}
		got, err := s.Lookup(owner("a"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ips("10.0.0.2"), got, addrCmp); diff != "" {
			t.Errorf("Lookup after failed Reserve (-want +got):\n%s", diff)
		}
		listed, err := s.readEntry(owner("a"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ips("10.0.0.2"), listed, addrCmp); diff != "" {
			t.Errorf("index entry after failed Reserve (-want +got):\n%s", diff)
		}
	})
	if _, err := os.Stat(filepath.Join(s.dir, "10.0.0.3")); !os.IsNotExist(err) {
		t.Errorf("lease file of the failed reservation exists: %v", err)
	}
	checkConsistent(t, s)
}
