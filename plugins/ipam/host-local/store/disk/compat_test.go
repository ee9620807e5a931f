package disk

import (
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// referenceDir writes a network directory the way the reference host-local
// plugin leaves it: a lock file, one file per lease named by the address
// holding "<id>\r\n<ifname>" (or only "<id>" for leases of its oldest
// versions), and last_reserved_ip.<range set index>.
func referenceDir(t *testing.T, files map[string]string) (dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	dir := filepath.Join(dataDir, "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lock"), nil, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		writeReferenceLease(t, dir, name, content)
	}
	return dataDir
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestReadsReferenceDirectory(t *testing.T) {
	ctx := t.Context()
	dataDir := referenceDir(t, map[string]string{
		"10.1.0.2":           "c1\r\neth0",
		"10.1.0.3":           "c2\r\neth0",
		"10.1.0.4":           "c1\r\nnet1",
		"10.1.0.5":           "c3", // legacy: container ID only
		"fd00::2":            "c1\r\neth0",
		"last_reserved_ip.0": "10.1.0.5",
		"last_reserved_ip.1": "fd00::2",
	})
	s, err := New(dataDir, "net", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sets := []allocator.RangeSet{
		{{Subnet: netip.MustParsePrefix("10.1.0.0/24"), RangeStart: ip("10.1.0.1"), RangeEnd: ip("10.1.0.254"), Gateway: ip("10.1.0.1")}},
		{{Subnet: netip.MustParsePrefix("fd00::/120"), RangeStart: ip("fd00::1"), RangeEnd: ip("fd00::ff"), Gateway: ip("fd00::1")}},
	}
	a := allocator.New(s, sets)

	got, err := a.Lookup(ctx, owner("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ips("10.1.0.2", "fd00::2"), got, addrCmp); diff != "" {
		t.Errorf("Lookup(c1, eth0) (-want +got):\n%s", diff)
	}
	got, err = a.Lookup(ctx, owner("c3"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ips("10.1.0.5"), got, addrCmp); diff != "" {
		t.Errorf("Lookup(c3) of a legacy lease (-want +got):\n%s", diff)
	}

	// Allocation continues round robin after the reference's last address.
	allocs, err := a.Allocate(ctx, owner("c4"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var gotAlloc []string
	for _, al := range allocs {
		gotAlloc = append(gotAlloc, al.Address.String())
	}
	if diff := cmp.Diff([]string{"10.1.0.6/24", "fd00::3/120"}, gotAlloc); diff != "" {
		t.Errorf("Allocate (-want +got):\n%s", diff)
	}

	for _, o := range []store.Attachment{owner("c1"), owner("c3"), store.NewAttachment("c1", "net1")} {
		if _, err := a.Release(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"10.1.0.3", "10.1.0.6", "fd00::3", "last_reserved_ip.0", "last_reserved_ip.1", "lock"}
	if diff := cmp.Diff(want, listDir(t, s.dir)); diff != "" {
		t.Errorf("directory after release (-want +got):\n%s", diff)
	}
	checkConsistent(t, s)
}

func TestWritesReferenceFormat(t *testing.T) {
	s := newStore(t)
	reserve(t, s, owner("c1"), "10.1.0.2", "0")
	reserve(t, s, store.NewAttachment("  c2 ", "net1"), "fd00::a", "1")
	want := map[string]string{
		"10.1.0.2":           "c1\r\neth0",
		"fd00::a":            "c2\r\nnet1",
		"last_reserved_ip.0": "10.1.0.2",
		"last_reserved_ip.1": "fd00::a",
		"lock":               "",
	}
	got := map[string]string{}
	for _, name := range listDir(t, s.dir) {
		path := filepath.Join(s.dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = string(data)
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

// referenceMatch mirrors how the reference plugin finds an attachment's
// leases: it walks the network directory recursively, reads every regular
// file, and compares the trimmed content to "<id>\r\n<ifname>" (then, for
// release when nothing matched, to "<id>" alone). It returns the matching
// paths.
func referenceMatch(t *testing.T, dir, id, ifname string) []string {
	t.Helper()
	find := func(match string) []string {
		var out []string
		err := filepath.Walk(dir, func(path string, info fs.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err == nil && strings.TrimSpace(string(data)) == match {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := find(id + "\r\n" + ifname); len(got) > 0 {
		return got
	}
	return find(id)
}

// TestReferenceSeesOnlyLeases checks that the files this store adds (index
// entries, stamp) never match the reference plugin's lookups, and that our
// store notices the reference plugin's releases.
func TestReferenceSeesOnlyLeases(t *testing.T) {
	s := newStore(t)
	// IDs chosen to look like the contents of our own files.
	owners := []store.Attachment{owner("c1"), owner("10.0.0.2"), owner("stamp"), store.NewAttachment("eth0", "c1")}
	for i, o := range owners {
		reserve(t, s, o, netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + i)}).String(), "0")
	}
	for i, o := range owners {
		want := []string{filepath.Join(s.dir, netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + i)}).String())}
		if diff := cmp.Diff(want, referenceMatch(t, s.dir, o.ContainerID, o.IfName)); diff != "" {
			t.Errorf("reference lookup of %+v (-want +got):\n%s", o, diff)
		}
	}
	// Legacy fallback: a bare ID matches none of our files either.
	for _, id := range []string{"# host-local index entry v1", "net", "lock", ".index"} {
		if got := referenceMatch(t, s.dir, id, "none"); len(got) > 0 {
			t.Errorf("reference lookup of %q matched %v", id, got)
		}
	}

	// The reference plugin releases c1 by deleting its lease file; our
	// index must notice.
	for _, p := range referenceMatch(t, s.dir, "c1", "eth0") {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	locked(t, s, func() {
		got, err := s.Lookup(owner("c1"))
		if err != nil || len(got) != 0 {
			t.Errorf("Lookup(c1) after reference release = %v, %v; want none", got, err)
		}
		leases, err := s.Leases()
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(leases, func(l store.Lease) bool { return l.Owner == owner("c1") }) {
			t.Errorf("Leases still lists c1: %v", leases)
		}
	})
	checkConsistent(t, s)
}
