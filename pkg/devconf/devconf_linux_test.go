//go:build linux

package devconf_test

import (
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/devconf"
)

// TestSetIPv4 sets arp_notify by netlink and reads it back from /proc/sys,
// and shows that an unknown index is an error.
func TestSetIPv4(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates a network namespace and a veth pair")
	}
	n := testenv.NewNS(t)
	err := n.Do(func(ns.NetNS) error {
		// A veth pair: the build machine's kernel has no dummy links.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dc0"}, PeerName: "dc1"}); err != nil {
			return err
		}
		l, err := netlink.LinkByName("dc0")
		if err != nil {
			return err
		}
		read := func() string {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/dc0/arp_notify")
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
		if got := read(); got != "0" {
			t.Fatalf("arp_notify before = %s, want 0", got)
		}
		if err := devconf.SetIPv4(l.Attrs().Index, devconf.ARPNotify, 1); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != "1" {
			t.Errorf("arp_notify after SetIPv4(1) = %s, want 1", got)
		}
		if err := devconf.SetIPv4(99999, devconf.ARPNotify, 1); err == nil {
			t.Errorf("SetIPv4 on index 99999 succeeded, want an error")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
