//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// The privileged tests of the plugin: they need root and a kernel with
// ipvlan, so `make test` runs them in the VM (see internal/vmtest). Every
// test drives the built binaries through libcni.

// TestIntegrationVerbs runs STATUS, ADD, CHECK and DEL in every mode and
// with every flag, and reads the link back from the kernel.
func TestIntegrationVerbs(t *testing.T) {
	modes := []struct {
		name string
		mode netlink.IPVlanMode
	}{
		{"l2", netlink.IPVLAN_MODE_L2},
		{"l3", netlink.IPVLAN_MODE_L3},
		{"l3s", netlink.IPVLAN_MODE_L3S},
	}
	flags := []struct {
		name string
		flag netlink.IPVlanFlag
	}{
		{"bridge", netlink.IPVLAN_FLAG_BRIDGE},
		{"private", netlink.IPVLAN_FLAG_PRIVATE},
		{"vepa", netlink.IPVLAN_FLAG_VEPA},
	}
	for _, m := range modes {
		for _, fl := range flags {
			t.Run(m.name+"/"+fl.name, func(t *testing.T) {
				t.Parallel()
				f := newNetFixture(t)
				c := f.newContainer("verbs-" + m.name + "-" + fl.name)
				l := f.list("1.1.0", f.plugin(map[string]any{"mode": m.name, "flag": fl.name}))

				if err := f.status(l); err != nil {
					t.Fatalf("STATUS before ADD: %v", err)
				}
				res := f.mustAdd(l, c.rt())

				mac := f.master.Attrs().HardwareAddr.String()
				leases := f.leases()
				if len(leases) != 1 {
					t.Fatalf("leases after ADD = %v, want one", leases)
				}
				if got := bareIPs(res); !slices.Equal(got, leases) {
					t.Errorf("result addresses %v differ from the leases %v", got, leases)
				}
				if owner := f.leaseOwner(leases[0]); owner != c.id {
					t.Errorf("lease %s belongs to %q, want %q", leases[0], owner, c.id)
				}
				addr := res.IPs[0].Address.String()
				wantLink := ctrLink{
					Type:   "ipvlan",
					Mode:   m.mode,
					Flag:   fl.flag,
					Parent: f.master.Attrs().Index,
					MAC:    mac,
					MTU:    f.master.Attrs().MTU,
					Up:     true,
					Addrs:  []string{addr},
				}
				if diff := cmp.Diff(wantLink, c.state(t, testIf)); diff != "" {
					t.Errorf("eth0 in the container (-want +got):\n%s", diff)
				}
				wantRes := resultShape{
					Interfaces: []resultIface{{Name: testIf, Mac: mac, Sandbox: c.ns.Path()}},
					IPs:        []resultIP{{Address: addr, Interface: 0}},
				}
				if diff := cmp.Diff(wantRes, shapeOf(res)); diff != "" {
					t.Errorf("ADD result (-want +got):\n%s", diff)
				}

				if err := f.check(l, c.rt()); err != nil {
					t.Errorf("CHECK after ADD: %v", err)
				}
				if err := f.status(l); err != nil {
					t.Errorf("STATUS with an attachment: %v", err)
				}
				if err := f.del(l, c.rt()); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				f.requireNothingLeft(c)
			})
		}
	}
}

// TestIntegrationVersionInfo asks the binary which versions it speaks.
func TestIntegrationVersionInfo(t *testing.T) {
	f := newNetFixture(t)
	var got []string
	err := f.inHost(func(ctx context.Context) error {
		info, err := f.cni.GetVersionInfo(ctx, "ipvlan")
		if err == nil {
			got = info.SupportedVersions()
		}
		return err
	})
	if err != nil {
		t.Fatalf("VERSION: %v", err)
	}
	slices.Sort(got)
	if diff := cmp.Diff(wantVersions, got); diff != "" {
		t.Errorf("supported versions (-want +got):\n%s", diff)
	}
}

// TestIntegrationResultVersions checks that ADD answers in the version the
// configuration asks for, and that DEL works in that version too.
func TestIntegrationResultVersions(t *testing.T) {
	for _, v := range wantVersions {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer("version-" + strings.ReplaceAll(v, ".", "-"))
			l := f.list(v, f.plugin(nil))
			res, err := f.add(l, c.rt())
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if got := res.Version(); got != v {
				t.Errorf("result version = %q, want %q", got, v)
			}
			cur := asCurrent(t, res)
			if got := bareIPs(cur); !slices.Equal(got, f.leases()) || len(got) != 1 {
				t.Errorf("result addresses %v, leases %v: want the same single address", got, f.leases())
			}
			if got := c.state(t, testIf).Addrs; len(got) != 1 || got[0] != cur.IPs[0].Address.String() {
				t.Errorf("eth0 addresses = %v, want [%s]", got, cur.IPs[0].Address.String())
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			f.requireNothingLeft(c)
		})
	}
}

// TestIntegrationAddressFamilies configures IPv4, IPv6 and both, with
// default routes from host-local.
func TestIntegrationAddressFamilies(t *testing.T) {
	v6Subnet := "fd00:10::/64"
	tests := []struct {
		name       string
		sets       []ipRange
		routes     []map[string]any
		keepIPv6   bool
		wantAddrs  []string
		wantRoutes []string
		wantIPv6On bool // disable_ipv6 is 0 and the link has a link-local address
	}{
		{
			name:       "ipv4",
			sets:       []ipRange{singleIPRange(testSubnet, "10.10.0.7")},
			routes:     []map[string]any{{"dst": "0.0.0.0/0"}},
			wantAddrs:  []string{"10.10.0.7/24"},
			wantRoutes: []string{"default via 10.10.0.1"},
		},
		{
			name:       "ipv4-keepIPv6",
			sets:       []ipRange{singleIPRange(testSubnet, "10.10.0.7")},
			routes:     []map[string]any{{"dst": "0.0.0.0/0"}},
			keepIPv6:   true,
			wantAddrs:  []string{"10.10.0.7/24"},
			wantRoutes: []string{"default via 10.10.0.1"},
			wantIPv6On: true,
		},
		{
			name:       "ipv6",
			sets:       []ipRange{singleIPRange(v6Subnet, "fd00:10::7")},
			routes:     []map[string]any{{"dst": "::/0"}},
			wantAddrs:  []string{"fd00:10::7/64"},
			wantRoutes: []string{"default via fd00:10::1"},
			wantIPv6On: true,
		},
		{
			name:       "dual-stack",
			sets:       []ipRange{singleIPRange(testSubnet, "10.10.0.7"), singleIPRange(v6Subnet, "fd00:10::7")},
			routes:     []map[string]any{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}},
			wantAddrs:  []string{"10.10.0.7/24", "fd00:10::7/64"},
			wantRoutes: []string{"default via 10.10.0.1", "default via fd00:10::1"},
			wantIPv6On: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer("family-" + tc.name)
			ipam := hostLocalIPAM(f.dataDir, tc.sets...)
			ipam["routes"] = tc.routes
			fields := map[string]any{"ipam": ipam}
			if tc.keepIPv6 {
				fields["keepIPv6"] = true
			}
			l := f.list("1.1.0", f.plugin(fields))
			res := f.mustAdd(l, c.rt())

			wantDisabled := "1"
			if tc.wantIPv6On {
				wantDisabled = "0"
			}
			if disabled, linkLocal := c.ipv6Of(t, testIf); disabled != wantDisabled || linkLocal != tc.wantIPv6On {
				t.Errorf("eth0 IPv6: disable_ipv6 %s, link-local address %v; want %s, %v", disabled, linkLocal, wantDisabled, tc.wantIPv6On)
			}

			if diff := cmp.Diff(tc.wantAddrs, c.state(t, testIf).Addrs); diff != "" {
				t.Errorf("eth0 addresses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRoutes, c.routes(t, testIf)); diff != "" {
				t.Errorf("eth0 routes (-want +got):\n%s", diff)
			}
			var wantIPs []string
			for _, a := range tc.wantAddrs {
				ip, _, _ := net.ParseCIDR(a)
				wantIPs = append(wantIPs, ip.String())
			}
			slices.Sort(wantIPs)
			if diff := cmp.Diff(wantIPs, bareIPs(res)); diff != "" {
				t.Errorf("result addresses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantIPs, f.leases()); diff != "" {
				t.Errorf("leases (-want +got):\n%s", diff)
			}
			if err := f.check(l, c.rt()); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			f.requireNothingLeft(c)
		})
	}
}

// TestIntegrationMTU sets the link's MTU within the allowed range.
func TestIntegrationMTU(t *testing.T) {
	for _, mtu := range []int{68, 1280, 1500} {
		t.Run(fmt.Sprint(mtu), func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer(fmt.Sprintf("mtu-%d", mtu))
			l := f.list("1.1.0", f.plugin(map[string]any{"mtu": mtu}))
			f.mustAdd(l, c.rt())
			if got := c.state(t, testIf).MTU; got != mtu {
				t.Errorf("eth0 MTU = %d, want %d", got, mtu)
			}
			if err := f.check(l, c.rt()); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			f.requireNothingLeft(c)
		})
	}
}

// TestIntegrationLinkInContainer puts the master in the container's netns.
func TestIntegrationLinkInContainer(t *testing.T) {
	tests := []struct {
		name   string
		master any // nil: omitted, found through the container's default route
	}{
		{"master-named", "cmaster0"},
		{"master-from-default-route", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer("in-container-" + tc.name)
			testenv.AddDummy(t, c.ns, "cother0")
			master := testenv.AddDummy(t, c.ns, "cmaster0")
			if tc.master == nil {
				addLinkRoute(t, c.h, master, "0.0.0.0/0")
			}
			l := f.list("1.1.0", f.plugin(map[string]any{"master": tc.master, "linkInContainer": true}))
			if err := f.status(l); err != nil {
				t.Errorf("STATUS: %v", err)
			}
			res := f.mustAdd(l, c.rt())
			got := c.state(t, testIf)
			if got.Type != "ipvlan" || got.Parent != master.Attrs().Index || got.MAC != master.Attrs().HardwareAddr.String() {
				t.Errorf("eth0 = %+v, want an ipvlan link on cmaster0 (index %d, MAC %s)",
					got, master.Attrs().Index, master.Attrs().HardwareAddr)
			}
			if diff := cmp.Diff(f.leases(), bareIPs(res)); diff != "" || len(f.leases()) != 1 {
				t.Errorf("result addresses vs leases (-leases +result):\n%s", diff)
			}
			if err := f.check(l, c.rt()); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			f.requireNothingLeft(c, "cmaster0", "cother0")
		})
	}
}

// TestIntegrationChained runs the plugin after a previous plugin whose
// result is embedded in the configuration, as libcni passes it on.
func TestIntegrationChained(t *testing.T) {
	t.Run("without-ipam-master-from-prevResult", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t)
		c := f.newContainer("chain-noipam")
		host := testenv.AddDummy(t, f.host, "chain0")
		prev := map[string]any{
			"cniVersion": "1.1.0",
			"interfaces": []any{
				map[string]any{"name": "chain0"},
				map[string]any{"name": "tap9", "sandbox": "/var/run/netns/elsewhere"},
			},
			"ips":    []any{map[string]any{"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 1}},
			"routes": []any{map[string]any{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}},
		}
		l := f.list("1.1.0", f.plugin(map[string]any{"master": nil, "ipam": nil, "prevResult": prev}))
		res := f.mustAdd(l, c.rt())

		mac := host.Attrs().HardwareAddr.String()
		want := resultShape{
			Interfaces: []resultIface{
				{Name: "chain0"},
				{Name: "tap9", Sandbox: "/var/run/netns/elsewhere"},
				{Name: testIf, Mac: mac, Sandbox: c.ns.Path()},
			},
			IPs: []resultIP{{Address: "10.9.0.5/24", Interface: 2}},
		}
		if diff := cmp.Diff(want, shapeOf(res)); diff != "" {
			t.Errorf("ADD result (-want +got):\n%s", diff)
		}
		got := c.state(t, testIf)
		if got.Parent != host.Attrs().Index || got.MAC != mac {
			t.Errorf("eth0 parent %d MAC %s, want chain0 (index %d, MAC %s)", got.Parent, got.MAC, host.Attrs().Index, mac)
		}
		if diff := cmp.Diff([]string{"10.9.0.5/24"}, got.Addrs); diff != "" {
			t.Errorf("eth0 addresses (-want +got):\n%s", diff)
		}
		if disabled, linkLocal := c.ipv6Of(t, testIf); disabled != "1" || linkLocal {
			t.Errorf("eth0 IPv6 with an IPv4-only prevResult: disable_ipv6 %s, link-local address %v; want 1, false", disabled, linkLocal)
		}
		if diff := cmp.Diff([]string{"default via 10.9.0.1"}, c.routes(t, testIf)); diff != "" {
			t.Errorf("eth0 routes (-want +got):\n%s", diff)
		}
		if err := f.check(l, c.rt()); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		if err := f.del(l, c.rt()); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		f.requireNothingLeft(c)
	})

	t.Run("with-ipam", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t)
		c := f.newContainer("chain-ipam")
		prev := map[string]any{
			"cniVersion": "1.1.0",
			"interfaces": []any{map[string]any{"name": "other0", "sandbox": c.ns.Path()}},
			"ips":        []any{map[string]any{"address": "10.9.0.5/24", "interface": 0}},
		}
		l := f.list("1.1.0", f.plugin(map[string]any{"prevResult": prev}))
		res := f.mustAdd(l, c.rt())

		leases := f.leases()
		if len(leases) != 1 {
			t.Fatalf("leases = %v, want one", leases)
		}
		mac := f.master.Attrs().HardwareAddr.String()
		shape := shapeOf(res)
		wantIfaces := []resultIface{{Name: "other0", Sandbox: c.ns.Path()}, {Name: testIf, Mac: mac, Sandbox: c.ns.Path()}}
		if diff := cmp.Diff(wantIfaces, shape.Interfaces); diff != "" {
			t.Errorf("result interfaces (-want +got):\n%s", diff)
		}
		var ours []resultIP
		for _, ip := range shape.IPs {
			if strings.HasPrefix(ip.Address, leases[0]+"/") {
				ours = append(ours, ip)
			}
		}
		if diff := cmp.Diff([]resultIP{{Address: leases[0] + "/24", Interface: 1}}, ours); diff != "" {
			t.Errorf("result's IPAM address (-want +got):\n%s", diff)
		}
		if got := c.state(t, testIf); !slices.Contains(got.Addrs, leases[0]+"/24") || got.Parent != f.master.Attrs().Index {
			t.Errorf("eth0 = %+v, want %s/24 on master0", got, leases[0])
		}
		if err := f.check(l, c.rt()); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		if err := f.del(l, c.rt()); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		f.requireNothingLeft(c)
	})

	t.Run("master-ambiguous", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t)
		c := f.newContainer("chain-ambiguous")
		testenv.AddDummy(t, f.host, "chain0")
		testenv.AddDummy(t, f.host, "chain1")
		prev := map[string]any{
			"cniVersion": "1.1.0",
			"interfaces": []any{map[string]any{"name": "chain0"}, map[string]any{"name": "chain1"}},
			"ips":        []any{map[string]any{"address": "10.9.0.5/24", "interface": 0}},
		}
		l := f.list("1.1.0", f.plugin(map[string]any{"master": nil, "ipam": nil, "prevResult": prev}))
		_, err := f.add(l, c.rt())
		wantCNIError(t, err, types.ErrInvalidNetworkConfig, "master")
		f.requireNothingLeft(c)
	})
}

// TestIntegrationMasterFromDefaultRoute omits master: the plugin must take
// the interface of the host's default route.
func TestIntegrationMasterFromDefaultRoute(t *testing.T) {
	f := newNetFixture(t)
	c := f.newContainer("default-route")
	uplink := testenv.AddDummy(t, f.host, "uplink0")
	addLinkRoute(t, f.hostH, uplink, "0.0.0.0/0")
	l := f.list("1.1.0", f.plugin(map[string]any{"master": nil}))
	if err := f.status(l); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	res := f.mustAdd(l, c.rt())
	got := c.state(t, testIf)
	if got.Parent != uplink.Attrs().Index || got.MAC != uplink.Attrs().HardwareAddr.String() {
		t.Errorf("eth0 parent %d MAC %s, want uplink0 (index %d, MAC %s); master0 is index %d",
			got.Parent, got.MAC, uplink.Attrs().Index, uplink.Attrs().HardwareAddr, f.master.Attrs().Index)
	}
	if len(res.Interfaces) == 0 || res.Interfaces[len(res.Interfaces)-1].Mac != uplink.Attrs().HardwareAddr.String() {
		t.Errorf("result interfaces %+v, want the last one with uplink0's MAC", res.Interfaces)
	}
	if err := f.check(l, c.rt()); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := f.del(l, c.rt()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	f.requireNothingLeft(c)
}

// TestIntegrationStatus checks that STATUS fails with code 50 when the
// plugin could not attach anything.
func TestIntegrationStatus(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]any
	}{
		{"master-missing", map[string]any{"master": "nosuch0"}},
		{"no-default-route", map[string]any{"master": nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			err := f.status(f.list("1.1.0", f.plugin(tc.fields)))
			wantCNIError(t, err, types.ErrPluginNotAvailable)
		})
	}
}

// TestIntegrationContainerToContainer pings between two containers on one
// master: they reach each other in every mode unless the flag is private.
func TestIntegrationContainerToContainer(t *testing.T) {
	tests := []struct {
		mode, flag string
		reach      bool
	}{
		{"l2", "bridge", true},
		{"l3", "bridge", true},
		{"l3s", "bridge", true},
		{"l2", "private", false},
		{"l3", "private", false},
	}
	for _, tc := range tests {
		t.Run(tc.mode+"/"+tc.flag, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			a := f.newContainer("ping-a")
			b := f.newContainer("ping-b")
			l := f.list("1.1.0", f.plugin(map[string]any{"mode": tc.mode, "flag": tc.flag}))
			f.mustAdd(l, a.rt())
			resB := f.mustAdd(l, b.rt())
			ipB := resB.IPs[0].Address.IP.String()
			if tc.reach {
				if err := pingOK(a.ns, ipB); err != nil {
					t.Errorf("container a cannot reach b: %v", err)
				}
			} else if err := pingFails(a.ns, ipB); err != nil {
				t.Errorf("with flag %s: %v", tc.flag, err)
			}
			for _, c := range []*testContainer{a, b} {
				if err := f.del(l, c.rt()); err != nil {
					t.Errorf("DEL %s: %v", c.id, err)
				}
			}
			if got := f.leases(); len(got) > 0 {
				t.Errorf("leases left: %v", got)
			}
		})
	}
}

// TestIntegrationPeer pings a container from a netns on the master's
// segment, standing in for another host. In l3 and l3s the peer needs the
// neighbour entry the RHEL guide describes (the container answers no ARP)
// and the host a route to the peer through the master.
func TestIntegrationPeer(t *testing.T) {
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			master, p := f.addPeer("10.30.0.1/24")
			c := f.newContainer("peer-" + mode)
			ipam := hostLocalIPAM(f.dataDir, singleIPRange("10.30.0.0/24", "10.30.0.5"))
			l := f.list("1.1.0", f.plugin(map[string]any{"master": "veth0", "mode": mode, "ipam": ipam}))
			f.mustAdd(l, c.rt())
			if mode != "l2" {
				l3Setup(t, f, master, p, "10.30.0.5")
			}
			if err := pingOK(p.ns, "10.30.0.5"); err != nil {
				t.Errorf("peer cannot reach the container: %v", err)
			}
			if err := pingOK(c.ns, p.ip.String()); err != nil {
				t.Errorf("container cannot reach the peer: %v", err)
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			f.requireNothingLeft(c)
		})
	}
}

// l3Setup is the RHEL guide's set-up for an l3 or l3s container at ctrIP:
// on the peer "ip neigh add ctrIP lladdr <master MAC> dev peer0", on the
// host "ip route add <peer IP>/32 dev <master>".
func l3Setup(t *testing.T, f *netFixture, master netlink.Link, p *segmentPeer, ctrIP string) {
	t.Helper()
	n := &netlink.Neigh{
		LinkIndex:    p.link.Attrs().Index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		IP:           net.ParseIP(ctrIP),
		HardwareAddr: master.Attrs().HardwareAddr,
	}
	if err := p.h.NeighAdd(n); err != nil {
		t.Fatalf("ip neigh add %s lladdr %s dev peer0: %v", ctrIP, master.Attrs().HardwareAddr, err)
	}
	addLinkRoute(t, f.hostH, master, p.ip.String()+"/32")
}

// TestIntegrationNetfilter shows the RHEL guide's netfilter semantics with
// nftables counters in the host netns while a peer pings the container:
// l2 traffic never reaches the host's hooks, l3 egress does, l3s ingress
// and egress do.
func TestIntegrationNetfilter(t *testing.T) {
	tests := []struct {
		mode                string
		wantIngress, wantEg bool
	}{
		{"l2", false, false},
		{"l3", false, true},
		{"l3s", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			master, p := f.addPeer("10.40.0.1/24")
			c := f.newContainer("nft-" + tc.mode)
			ctrIP := "10.40.0.5"
			ipam := hostLocalIPAM(f.dataDir, singleIPRange("10.40.0.0/24", ctrIP))
			l := f.list("1.1.0", f.plugin(map[string]any{"master": "veth0", "mode": tc.mode, "ipam": ipam}))
			f.mustAdd(l, c.rt())
			if tc.mode != "l2" {
				l3Setup(t, f, master, p, ctrIP)
			}
			counters := loadNFTCounters(t, f.host, ctrIP)
			if err := pingOK(p.ns, ctrIP); err != nil {
				t.Fatalf("peer cannot reach the container: %v", err)
			}
			got := counters()
			ingress := got["pre"] > 0 && got["in"] > 0
			egress := got["out"] > 0 || got["post"] > 0
			if ingress != tc.wantIngress || egress != tc.wantEg {
				t.Errorf("host netns counters %v: ingress seen %v, egress seen %v; want %v, %v",
					got, ingress, egress, tc.wantIngress, tc.wantEg)
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}

// TestIntegrationStaleNeighbour gives a peer a neighbour entry with a wrong
// MAC for the container's future address: ADD must announce the address so
// the peer learns the master's MAC without sending anything itself. The
// kernel announces when the link comes up (arp_notify, ndisc_notify, read
// back here); in l2 bridge mode the ipvlan driver hands the frame to the
// master's other slaves too, which a sibling set to accept unsolicited ARP
// (arp_accept=1) shows.
func TestIntegrationStaleNeighbour(t *testing.T) {
	tests := []struct {
		name        string
		peer        string // the peer's address
		subnet      string
		ip          string // the container's
		sibling     string // a sibling's address, "" for none
		sysctl      []string
		inContainer bool   // linkInContainer: the master in the container's namespace
		source      string // of the addresses: "prevResult" or "host-local"
	}{
		{name: "IPv4 from prevResult", peer: "10.50.0.1/24", subnet: "10.50.0.0/24", ip: "10.50.0.6", sibling: "10.50.0.5",
			sysctl: []string{"ipv4", "arp_notify"}, source: "prevResult"},
		{name: "IPv4 from host-local", peer: "10.50.0.1/24", subnet: "10.50.0.0/24", ip: "10.50.0.6", sibling: "10.50.0.5",
			sysctl: []string{"ipv4", "arp_notify"}, source: "host-local"},
		{name: "IPv4 with the master in the container's namespace", peer: "10.50.0.1/24", subnet: "10.50.0.0/24", ip: "10.50.0.6",
			sysctl: []string{"ipv4", "arp_notify"}, inContainer: true, source: "prevResult"},
		{name: "IPv6 from prevResult", peer: "fd00:50::1/64", subnet: "fd00:50::/64", ip: "fd00:50::6",
			sysctl: []string{"ipv6", "ndisc_notify"}, source: "prevResult"},
		{name: "IPv6 from host-local", peer: "fd00:50::1/64", subnet: "fd00:50::/64", ip: "fd00:50::6",
			sysctl: []string{"ipv6", "ndisc_notify"}, source: "host-local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newNetFixture(t)
			c := f.newContainer("stale-neigh")
			master, p := f.addPeer(tc.peer)
			if tc.inContainer {
				master, p = f.addPeerAt(c.h, tc.peer)
			}
			fields := func(ip string) map[string]any {
				return map[string]any{"master": "veth0", "ipam": hostLocalIPAM(f.dataDir, singleIPRange(tc.subnet, ip))}
			}

			var sibling *testContainer
			if tc.sibling != "" {
				sibling = f.newContainer("announce-sibling")
				siblingList := f.list("1.1.0", f.plugin(fields(tc.sibling)))
				f.mustAdd(siblingList, sibling.rt())
				defer func() {
					if err := f.del(siblingList, sibling.rt()); err != nil {
						t.Errorf("DEL the sibling: %v", err)
					}
				}()
				err := sibling.ns.Do(func(ns.NetNS) error {
					return os.WriteFile("/proc/sys/net/ipv4/conf/"+testIf+"/arp_accept", []byte("1"), 0o644)
				})
				if err != nil {
					t.Fatalf("sysctl arp_accept=1 in the sibling: %v", err)
				}
			}

			ctrIP := net.ParseIP(tc.ip)
			stale := &netlink.Neigh{
				LinkIndex:    p.link.Attrs().Index,
				Family:       familyOf(ctrIP),
				State:        netlink.NUD_STALE,
				IP:           ctrIP,
				HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99},
			}
			// ip neigh replace <ip> lladdr 02:00:00:00:00:99 dev peer0 nud stale
			if err := p.h.NeighSet(stale); err != nil {
				t.Fatalf("ip neigh replace %s lladdr %s nud stale: %v", ctrIP, stale.HardwareAddr, err)
			}
			if got := p.neighMAC(t, ctrIP); got != stale.HardwareAddr.String() {
				t.Fatalf("peer's entry for %s = %q before ADD, want %s", ctrIP, got, stale.HardwareAddr)
			}

			conf := fields(tc.ip)
			if tc.source == "prevResult" {
				bits := 24
				if ctrIP.To4() == nil {
					bits = 64
				}
				conf["ipam"] = nil
				conf["prevResult"] = map[string]any{
					"cniVersion": "1.1.0",
					"ips":        []any{map[string]any{"address": fmt.Sprintf("%s/%d", ctrIP, bits)}},
				}
			}
			if tc.inContainer {
				conf["linkInContainer"] = true
			}
			l := f.list("1.1.0", f.plugin(conf))
			f.mustAdd(l, c.rt())

			want := master.Attrs().HardwareAddr.String()
			var got string
			if !pollUntil(3*time.Second, func() bool { got = p.neighMAC(t, ctrIP); return got == want }) {
				t.Errorf("peer's entry for %s = %q 3s after ADD, want the master's MAC %s", ctrIP, got, want)
			}
			if v := c.sysctl(t, tc.sysctl[0], testIf, tc.sysctl[1]); v != "1" {
				t.Errorf("%s of the container's %s = %s, want 1", tc.sysctl[1], testIf, v)
			}
			if sibling != nil {
				if !pollUntil(3*time.Second, func() bool { return sibling.hasNeigh(t, ctrIP) }) {
					t.Errorf("the sibling has no entry for %s: the kernel's announcement did not reach the master's other slaves", ctrIP)
				}
			}
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}

// TestIntegrationDel checks that DEL succeeds and releases the lease when
// there is less and less left to delete.
func TestIntegrationDel(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]any                    // config over the default one
		setup  func(t *testing.T, f *netFixture) // before ADD
		before func(t *testing.T, f *netFixture, c *testContainer)
	}{
		{name: "twice", before: func(t *testing.T, f *netFixture, c *testContainer) {
			l := f.list("1.1.0", f.plugin(nil))
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("first DEL: %v", err)
			}
		}},
		{name: "netns-deleted", before: func(t *testing.T, f *netFixture, c *testContainer) {
			c.h.Close() // a netlink socket in the netns keeps it alive
			if err := c.ns.Close(); err != nil {
				t.Fatal(err)
			}
			// Detached lazily: a plugin another subtest is starting may
			// hold a copy of the test's descriptors until its exec, which
			// makes a plain unmount fail with EBUSY.
			if err := unix.Unmount(c.ns.Path(), unix.MNT_DETACH); err != nil {
				t.Fatalf("unmount the container netns: %v", err)
			}
			if err := os.Remove(c.ns.Path()); err != nil {
				t.Fatalf("remove the container netns: %v", err)
			}
			if _, err := os.Stat(c.ns.Path()); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("netns %s still exists: %v", c.ns.Path(), err)
			}
		}},
		{name: "master-deleted", before: func(t *testing.T, f *netFixture, c *testContainer) {
			if err := f.hostH.LinkDel(f.master); err != nil {
				t.Fatalf("ip link del master0: %v", err)
			}
		}},
		{name: "link-deleted", before: func(t *testing.T, f *netFixture, c *testContainer) {
			if err := c.h.LinkDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: testIf}}); err != nil {
				t.Fatalf("ip link del eth0: %v", err)
			}
		}},
		{
			// master omitted: DEL cannot find it once the default route
			// went away with its interface.
			name:   "default-route-master-deleted",
			fields: map[string]any{"master": nil},
			setup: func(t *testing.T, f *netFixture) {
				addLinkRoute(t, f.hostH, testenv.AddDummy(t, f.host, "uplink0"), "0.0.0.0/0")
			},
			before: func(t *testing.T, f *netFixture, c *testContainer) {
				if err := f.hostH.LinkDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}}); err != nil {
					t.Fatalf("ip link del uplink0: %v", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer("del-" + tc.name)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			l := f.list("1.1.0", f.plugin(tc.fields))
			f.mustAdd(l, c.rt())
			if got := f.leases(); len(got) != 1 {
				t.Fatalf("leases after ADD = %v, want one", got)
			}
			tc.before(t, f, c)
			if err := f.del(l, c.rt()); err != nil {
				t.Errorf("DEL: %v", err)
			}
			if got := f.leases(); len(got) > 0 {
				t.Errorf("leases after DEL: %v", got)
			}
			if tc.name != "netns-deleted" && c.hasLink(t, testIf) {
				t.Errorf("eth0 still in the container after DEL")
			}
		})
	}
}

// TestIntegrationDelRefused runs DEL with stdin that skel refuses before
// the plugin's DEL runs, or with a configuration the plugin refuses. The
// link's deletion needs neither and starts before stdin is read: the link
// is gone, the error names the field or value with the right code, the
// lease stays (IPAM's configuration was not read), and a DEL with the
// valid configuration then releases it.
func TestIntegrationDelRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin func(f *netFixture) []byte
		code  uint
		want  []string
	}{
		{"not-json", func(*netFixture) []byte { return []byte("{not json") }, types.ErrDecodingFailure, []string{"network config"}},
		{"unsupported-cniVersion", func(*netFixture) []byte {
			return []byte(`{"cniVersion":"9.9.9","name":"` + testNet + `","type":"ipvlan"}`)
		}, types.ErrIncompatibleCNIVersion, []string{"9.9.9"}},
		{"invalid-mode", func(f *netFixture) []byte {
			return pluginStdin(f.t, "1.1.0", f.plugin(map[string]any{"mode": "l4"}))
		}, types.ErrInvalidNetworkConfig, []string{"mode", `"l4"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newNetFixture(t)
			c := f.newContainer("del-refused-" + tc.name)
			valid := f.plugin(nil)
			f.mustAdd(f.list("1.1.0", valid), c.rt())

			err := f.execRaw("DEL", tc.stdin(f), c.rt())
			wantCNIError(t, err, tc.code, tc.want...)
			if c.hasLink(t, testIf) {
				t.Errorf("eth0 still in the container after the refused DEL")
			}
			if got := f.leases(); len(got) != 1 {
				t.Errorf("leases after the refused DEL = %v, want the one ADD took", got)
			}
			if err := f.del(f.list("1.1.0", valid), c.rt()); err != nil {
				t.Fatalf("DEL with the valid configuration: %v", err)
			}
			f.requireNothingLeft(c)
		})
	}
}

// TestIntegrationOwnNetns: ADD and DEL naming the plugin's own namespace
// as CNI_NETNS are refused with code 8 before anything is done: no link
// made, no lease taken, and DEL's early deletion leaves the ipvlan link of
// that name in the host alone. With CNI_NETNS_OVERRIDE=1 the same DEL
// runs, and deletes it.
func TestIntegrationOwnNetns(t *testing.T) {
	f := newNetFixture(t)
	const hostIf = "own0"
	if err := f.hostH.LinkAdd(&netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: hostIf, ParentIndex: f.master.Attrs().Index}, Mode: netlink.IPVLAN_MODE_L2}); err != nil {
		t.Fatalf("ip link add %s type ipvlan: %v", hostIf, err)
	}
	l := f.list("1.1.0", f.plugin(nil))
	own := &libcni.RuntimeConf{ContainerID: "own-netns", NetNS: f.host.Path(), IfName: "own1"}

	_, err := f.add(l, own)
	wantCNIError(t, err, types.ErrInvalidNetNS, "CNI_NETNS", f.host.Path())
	if _, err := f.hostH.LinkByName("own1"); err == nil {
		t.Errorf("the refused ADD made own1 in the host namespace")
	}
	if got := f.leases(); len(got) != 0 {
		t.Errorf("leases after the refused ADD = %v, want none", got)
	}

	own.IfName = hostIf
	wantCNIError(t, f.del(l, own), types.ErrInvalidNetNS, "CNI_NETNS", f.host.Path())
	if _, err := f.hostH.LinkByName(hostIf); err != nil {
		t.Errorf("the refused DEL deleted %s of the host: %v", hostIf, err)
	}

	// libcni has no CNI_NETNS_OVERRIDE: exec the plugin as it would, with it.
	stdin := pluginStdin(t, "1.1.0", f.plugin(nil))
	err = f.inHost(func(ctx context.Context) error {
		path, err := invoke.FindInPath("ipvlan", []string{testenv.PluginDir(t)})
		if err != nil {
			return err
		}
		args := &invoke.Args{Command: "DEL", ContainerID: own.ContainerID, NetNS: own.NetNS, IfName: hostIf, Path: testenv.PluginDir(t)}
		raw := &invoke.RawExec{Stderr: os.Stderr}
		_, err = raw.ExecPlugin(ctx, path, stdin, append(args.AsEnv(), "CNI_NETNS_OVERRIDE=1"))
		return err
	})
	if err != nil {
		t.Fatalf("DEL with CNI_NETNS_OVERRIDE=1: %v", err)
	}
	if _, err := f.hostH.LinkByName(hostIf); err == nil {
		t.Errorf("DEL with CNI_NETNS_OVERRIDE=1 left %s", hostIf)
	}
}

// TestIntegrationGC releases the lease of an attachment the runtime no
// longer lists and keeps the one it does.
func TestIntegrationGC(t *testing.T) {
	f := newNetFixture(t)
	keep := f.newContainer("gc-keep")
	stale := f.newContainer("gc-stale")
	l := f.list("1.1.0", f.plugin(nil))
	resKeep := f.mustAdd(l, keep.rt())
	// The stale attachment goes through another libcni cache, so libcni's
	// own GC (a DEL of every cached attachment not listed) cannot see it:
	// only the plugin's GC, forwarded to IPAM, can release its lease.
	other := *f
	other.cni = libcniWithCache(t)
	resStale := other.mustAdd(l, stale.rt())
	want := bareIPs(resKeep)
	all := append(bareIPs(resKeep), bareIPs(resStale)...)
	slices.Sort(all)
	if diff := cmp.Diff(all, f.leases()); diff != "" {
		t.Fatalf("leases before GC (-want +got):\n%s", diff)
	}
	if err := f.gc(l, keep.attachment()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if diff := cmp.Diff(want, f.leases()); diff != "" {
		t.Errorf("leases after GC (-want +got):\n%s", diff)
	}
	if !keep.hasLink(t, testIf) {
		t.Errorf("GC removed the valid attachment's eth0")
	}
}

// TestIntegrationCheckMismatch changes the attachment, or the config CHECK
// compares it with, in one respect at a time: CHECK must fail naming it.
func TestIntegrationCheckMismatch(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]any // config for CHECK, over the one used for ADD
		change func(t *testing.T, f *netFixture, c *testContainer)
		want   []string // the error names all of these
	}{
		{name: "mode", fields: map[string]any{"mode": "l3"}, want: []string{"mode", "l3"}},
		{name: "flag", fields: map[string]any{"flag": "private"}, want: []string{"flag", "private"}},
		{name: "mtu", fields: map[string]any{"mtu": 1400}, want: []string{"mtu", "1400"}},
		{name: "master", fields: map[string]any{"master": "master1"}, want: []string{"master1"},
			change: func(t *testing.T, f *netFixture, c *testContainer) { testenv.AddDummy(t, f.host, "master1") }},
		{name: "link-missing", want: []string{testIf},
			change: func(t *testing.T, f *netFixture, c *testContainer) {
				if err := c.h.LinkDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: testIf}}); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "not-ipvlan", want: []string{"ipvlan"},
			change: func(t *testing.T, f *netFixture, c *testContainer) {
				if err := c.h.LinkDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: testIf}}); err != nil {
					t.Fatal(err)
				}
				testenv.AddDummy(t, c.ns, testIf)
			}},
		{name: "address-missing", want: []string{"10.10.0."},
			change: func(t *testing.T, f *netFixture, c *testContainer) {
				l, err := c.h.LinkByName(testIf)
				if err != nil {
					t.Fatal(err)
				}
				addrs, err := c.h.AddrList(l, netlink.FAMILY_V4)
				if err != nil || len(addrs) == 0 {
					t.Fatalf("ip addr show eth0: %v %v", addrs, err)
				}
				if err := c.h.AddrDel(l, &addrs[0]); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "route-missing", want: []string{"route", "192.168.50.0"},
			change: func(t *testing.T, f *netFixture, c *testContainer) {
				_, dst, _ := net.ParseCIDR("192.168.50.0/24")
				rs, err := c.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
				if err != nil || len(rs) != 1 {
					t.Fatalf("ip route show 192.168.50.0/24: %v %v", rs, err)
				}
				if err := c.h.RouteDel(&rs[0]); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer("check-" + tc.name)
			ipam := hostLocalIPAM(f.dataDir, subnetRange(testSubnet))
			ipam["routes"] = []map[string]any{{"dst": "192.168.50.0/24"}}
			added := f.plugin(map[string]any{"ipam": ipam})
			f.mustAdd(f.list("1.1.0", added), c.rt())
			if err := f.check(f.list("1.1.0", added), c.rt()); err != nil {
				t.Fatalf("CHECK before the change: %v", err)
			}
			if tc.change != nil {
				tc.change(t, f, c)
			}
			checked := f.plugin(map[string]any{"ipam": ipam})
			for k, v := range tc.fields {
				checked[k] = v
			}
			err := f.check(f.list("1.1.0", checked), c.rt())
			wantCNIError(t, err, ErrCheckFailed, tc.want...)
			if err := f.del(f.list("1.1.0", added), c.rt()); err != nil {
				t.Errorf("DEL: %v", err)
			}
			if got := f.leases(); len(got) > 0 {
				t.Errorf("leases after DEL: %v", got)
			}
		})
	}
}

// TestIntegrationBadInputs feeds ADD one bad input at a time: each must
// fail with its error code and leave nothing behind.
func TestIntegrationBadInputs(t *testing.T) {
	tests := []struct {
		name     string
		fields   map[string]any
		version  string // default 1.1.0
		ifName   string // default eth0; any other goes straight to the binary
		stdin    string // raw stdin, straight to the binary
		setup    func(t *testing.T, f *netFixture, c *testContainer)
		keep     []string // links in the container before ADD
		wantCode uint
		wantMsg  []string
	}{
		{name: "unknown-mode", fields: map[string]any{"mode": "l4"}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"mode", `"l4"`}},
		{name: "unknown-flag", fields: map[string]any{"flag": "promisc"}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"flag", `"promisc"`}},
		{name: "mtu-negative", fields: map[string]any{"mtu": -1}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"mtu", "-1"}},
		{name: "mtu-below-minimum", fields: map[string]any{"mtu": 67}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"mtu", "67"}},
		{name: "mtu-above-master", fields: map[string]any{"mtu": 1501}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"mtu", "1501"}},
		{name: "master-not-found", fields: map[string]any{"master": "nosuch0"}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"master", `"nosuch0"`}},
		{name: "master-has-macvlan", wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"macvlan", testMaster},
			setup: func(t *testing.T, f *netFixture, c *testContainer) {
				mv := &netlink.Macvlan{
					LinkAttrs: netlink.LinkAttrs{Name: "mv0", ParentIndex: f.master.Attrs().Index},
					Mode:      netlink.MACVLAN_MODE_BRIDGE,
				}
				if err := f.hostH.LinkAdd(mv); err != nil {
					t.Fatalf("ip link add link master0 name mv0 type macvlan: %v", err)
				}
			}},
		{name: "keepIPv6-not-boolean", fields: map[string]any{"keepIPv6": "yes"}, wantCode: types.ErrDecodingFailure, wantMsg: []string{"keepIPv6"}},
		{name: "ipam-missing", fields: map[string]any{"ipam": nil}, wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"ipam"}},
		{name: "ipam-type-relative-path", fields: map[string]any{"ipam": map[string]any{"type": "../host-local"}},
			wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"ipam", `"../host-local"`}},
		{name: "ipam-type-absolute-path", fields: map[string]any{"ipam": map[string]any{"type": "/bin/true"}},
			wantCode: types.ErrInvalidNetworkConfig, wantMsg: []string{"ipam", `"/bin/true"`}},
		{name: "ifname-too-long", ifName: "eth0123456789abc", wantCode: types.ErrInvalidEnvironmentVariables, wantMsg: []string{"eth0123456789abc"}},
		{name: "ifname-slash", ifName: "eth/0", wantCode: types.ErrInvalidEnvironmentVariables, wantMsg: []string{"eth/0"}},
		{name: "ifname-dot", ifName: ".", wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "ifname-dotdot", ifName: "..", wantCode: types.ErrInvalidEnvironmentVariables},
		{name: "ifname-taken", keep: []string{testIf}, wantCode: types.ErrInvalidEnvironmentVariables, wantMsg: []string{testIf},
			setup: func(t *testing.T, f *netFixture, c *testContainer) { testenv.AddDummy(t, c.ns, testIf) }},
		{name: "undecodable-json", stdin: `{"cniVersion": "1.1.0", "name": "ipvlantest", "type": "ipvlan", "master": `,
			wantCode: types.ErrDecodingFailure},
		{name: "unsupported-version", version: "9.9.9", wantCode: types.ErrIncompatibleCNIVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			c := f.newContainer("bad-" + tc.name)
			if tc.setup != nil {
				tc.setup(t, f, c)
			}
			version := tc.version
			if version == "" {
				version = "1.1.0"
			}
			plugin := f.plugin(tc.fields)
			var err error
			switch {
			case tc.stdin != "":
				err = f.execRaw("ADD", []byte(tc.stdin), c.rt())
			case tc.ifName != "":
				// libcni refuses these names itself: ask the plugin directly.
				rt := c.rt()
				rt.IfName = tc.ifName
				err = f.execRaw("ADD", pluginStdin(t, version, plugin), rt)
			default:
				_, err = f.add(f.list(version, plugin), c.rt())
			}
			wantCNIError(t, err, tc.wantCode, tc.wantMsg...)
			f.requireNothingLeft(c, tc.keep...)
			if slices.Contains(tc.keep, testIf) {
				if got := c.state(t, testIf).Type; got != "dummy" {
					t.Errorf("the container's own eth0 is now a %s link, want it untouched (dummy)", got)
				}
			}
		})
	}
}

// TestIntegrationAddRollback makes ADD fail after the link exists and the
// IPAM step has run: the link and the lease must both be gone.
func TestIntegrationAddRollback(t *testing.T) {
	t.Run("ipam-exhausted", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t)
		first := f.newContainer("rollback-first")
		second := f.newContainer("rollback-second")
		ipam := hostLocalIPAM(f.dataDir, singleIPRange(testSubnet, "10.10.0.9"))
		l := f.list("1.1.0", f.plugin(map[string]any{"ipam": ipam}))
		f.mustAdd(l, first.rt())
		_, err := f.add(l, second.rt())
		if err == nil {
			t.Fatalf("ADD with an exhausted range succeeded")
		}
		if got := linkNamesWhere(t, second.h, func(l netlink.Link) bool { return l.Attrs().Name != "lo" }); len(got) > 0 {
			t.Errorf("links left in the second container: %v", got)
		}
		if diff := cmp.Diff([]string{"10.10.0.9"}, f.leases()); diff != "" {
			t.Errorf("leases (-want +got):\n%s", diff)
		}
		if owner := f.leaseOwner("10.10.0.9"); owner != first.id {
			t.Errorf("lease 10.10.0.9 belongs to %q, want %q", owner, first.id)
		}
		if err := f.check(l, first.rt()); err != nil {
			t.Errorf("CHECK of the first container: %v", err)
		}
	})
	t.Run("route-unreachable", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t)
		c := f.newContainer("rollback-route")
		ipam := hostLocalIPAM(f.dataDir, subnetRange(testSubnet))
		ipam["routes"] = []map[string]any{{"dst": "192.168.60.0/24", "gw": "172.16.0.1"}}
		l := f.list("1.1.0", f.plugin(map[string]any{"ipam": ipam}))
		if _, err := f.add(l, c.rt()); err == nil {
			t.Fatalf("ADD with a route through an unreachable gateway succeeded")
		}
		f.requireNothingLeft(c)
	})
}
