package disk

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// FuzzEntry checks that an entry gives back exactly the owner and the
// addresses it was written with, whatever the bytes of the owner, and that
// decoding any name and target never panics.
func FuzzEntry(f *testing.F) {
	f.Add("c1", "eth0", "10.0.0.2,fd00::2")
	f.Add("c1", "e\xff", "10.0.0.2")
	f.Add("", "", "")
	f.Add(strings.Repeat("x", 300), "eth0", "junk,")
	f.Add("a+b", "%41", "10.0.0.2 6331")
	f.Fuzz(func(t *testing.T, id, ifname, target string) {
		decodeEntry(id+"+"+ifname, target)
		decodeEntry("="+id, target)
		o := store.Attachment{ContainerID: strings.TrimSpace(id), IfName: ifname}
		if strings.TrimSpace(ifname) != ifname || strings.Contains(o.ContainerID, lineBreak) {
			return // not an owner a lease file can hold
		}
		want := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}
		name := entryName(o)
		got, ips, err := decodeEntry(name, encodeEntry(o, want))
		if err != nil {
			t.Fatalf("decodeEntry(%q) of %+v: %v", name, o, err)
		}
		if got != o {
			t.Errorf("owner %+v came back as %+v", o, got)
		}
		if diff := cmp.Diff(want, ips, addrCmp); diff != "" {
			t.Errorf("addresses (-want +got):\n%s", diff)
		}
	})
}

// TestNonUTF8Owner leases to two interface names that differ only in an
// invalid byte and its replacement character: each keeps its own lease.
func TestNonUTF8Owner(t *testing.T) {
	s := newStore(t)
	raw, replaced := store.NewAttachment("c1", "e\xff"), store.NewAttachment("c1", "e\uFFFD")
	reserve(t, s, raw, "10.0.0.2", "0")
	reserve(t, s, replaced, "10.0.0.3", "0")
	locked(t, s, func() {
		for o, want := range map[store.Attachment][]netip.Addr{raw: ips("10.0.0.2"), replaced: ips("10.0.0.3")} {
			got, err := s.Lookup(o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, addrCmp); diff != "" {
				t.Errorf("Lookup(%q) (-want +got):\n%s", o.IfName, diff)
			}
		}
		if got, err := s.Release(raw); err != nil || len(got) != 1 || got[0] != ip("10.0.0.2") {
			t.Errorf("Release(%q) = %v, %v; want 10.0.0.2", raw.IfName, got, err)
		}
	})
	checkConsistent(t, s)
	// And the same after a reconciliation, which reads owners back from
	// the lease files.
	writeReferenceLease(t, s.dir, "10.0.0.9", "c2\r\neth0")
	locked(t, s, func() {
		got, err := s.Lookup(replaced)
		if err != nil || len(got) != 1 || got[0] != ip("10.0.0.3") {
			t.Errorf("Lookup(%q) after reconciling = %v, %v; want 10.0.0.3", replaced.IfName, got, err)
		}
	})
	checkConsistent(t, s)
}
