package testenv

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// TestIPVlanModes is the harness's canary: in the VM it proves the kernel
// creates ipvlan links in every mode and reports the mode back.
func TestIPVlanModes(t *testing.T) {
	RequireKernel(t)
	n := NewNS(t)
	master := AddDummy(t, n, "master0")
	h := Handle(t, n)
	for _, tc := range []struct {
		name string
		mode netlink.IPVlanMode
	}{
		{"l2", netlink.IPVLAN_MODE_L2},
		{"l3", netlink.IPVLAN_MODE_L3},
		{"l3s", netlink.IPVLAN_MODE_L3S},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "iv-" + tc.name
			link := &netlink.IPVlan{
				LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: master.Attrs().Index},
				Mode:      tc.mode,
			}
			if err := h.LinkAdd(link); err != nil {
				t.Fatalf("ip link add link master0 name %s type ipvlan mode %s: %v", name, tc.name, err)
			}
			t.Cleanup(func() { _ = h.LinkDel(link) })
			got, err := h.LinkByName(name)
			if err != nil {
				t.Fatalf("look up %s: %v", name, err)
			}
			iv, ok := got.(*netlink.IPVlan)
			if !ok {
				t.Fatalf("%s is a %s link, want ipvlan", name, got.Type())
			}
			if iv.Mode != tc.mode {
				t.Errorf("mode of %s = %v, want %v", name, iv.Mode, tc.mode)
			}
			if iv.Attrs().ParentIndex != master.Attrs().Index {
				t.Errorf("parent of %s = %d, want %d", name, iv.Attrs().ParentIndex, master.Attrs().Index)
			}
		})
	}
}
