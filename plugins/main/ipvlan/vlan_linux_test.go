//go:build linux

package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
)

func TestVLANName(t *testing.T) {
	for _, tc := range []struct {
		master string
		vid    int
		want   string
	}{
		{"eth0", 10, "eth0.10"},
		{"enp0s31f6", 4094, "enp0s31f6.4094"},
		{"enp0s31f6x", 4094, "enp0s31f6x.4094"}, // 15 characters
		{"enp0s31f6xy", 4094, "v" + fnvHex("enp0s31f6xy") + ".4094"},
	} {
		got := vlanName(tc.master, tc.vid)
		if got != tc.want || len(got) > 15 {
			t.Errorf("vlanName(%q, %d) = %q, want %q (at most 15 characters)", tc.master, tc.vid, got, tc.want)
		}
	}
}

func fnvHex(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// vlanPeer gives the peer netns a VLAN sub-interface of peer0 with an
// address: ip link add link peer0 name peer0.<vid> type vlan id <vid>.
func vlanPeer(t *testing.T, p *segmentPeer, vid int, cidr string) netlink.Link {
	t.Helper()
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("peer0.%d", vid), ParentIndex: p.link.Attrs().Index}, VlanId: vid}
	if err := p.h.LinkAdd(v); err != nil {
		t.Fatalf("ip link add link peer0 name %s type vlan id %d: %v", v.Name, vid, err)
	}
	l, err := p.h.LinkByName(v.Name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.h.AddrAdd(l, a); err != nil {
		t.Fatalf("ip addr add %s dev %s: %v", cidr, v.Name, err)
	}
	if err := p.h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

// vlanLinks lists the host's VLAN links as "name id alias".
func (f *netFixture) vlanLinks() []string {
	f.t.Helper()
	links, err := f.hostH.LinkList()
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if v, ok := l.(*netlink.Vlan); ok {
			out = append(out, fmt.Sprintf("%s %d %s", v.Name, v.VlanId, v.Alias))
		}
	}
	return out
}

// TestIntegrationVLAN: two containers on VLAN 10 of veth0; the plugin
// makes veth0.10 (up, the master's MTU, its mark), a peer's VLAN 10
// interface on the far end of the veth reaches both, a VLAN 20 one
// neither; CHECK passes; veth0.10 stays after the first DEL and goes with
// the second.
func TestIntegrationVLAN(t *testing.T) {
	f := newNetFixture(t)
	master, p := f.addPeer("192.168.99.1/24")
	ipam := hostLocalIPAM(f.dataDir, ipRange{"subnet": "10.60.10.0/24", "rangeStart": "10.60.10.5"})
	l := f.list("1.1.0", f.plugin(map[string]any{"master": "veth0", "vlan": 10, "ipam": ipam}))
	a := f.newContainer("vlan-a")
	b := f.newContainer("vlan-b")
	ipA := bareIPs(f.mustAdd(l, a.rt()))[0]
	ipB := bareIPs(f.mustAdd(l, b.rt()))[0]

	v, err := f.hostH.LinkByName("veth0.10")
	if err != nil {
		t.Fatalf("veth0.10 after ADD: %v", err)
	}
	vl, ok := v.(*netlink.Vlan)
	if !ok || vl.VlanId != 10 || vl.ParentIndex != master.Attrs().Index {
		t.Fatalf("veth0.10 = %#v, want VLAN 10 of veth0", v)
	}
	if vl.Alias != vlanAlias || vl.Attrs().Flags&net.FlagUp == 0 || vl.MTU != master.Attrs().MTU {
		t.Errorf("veth0.10: alias %q, flags %v, mtu %d; want alias %q, up, mtu %d", vl.Alias, vl.Attrs().Flags, vl.MTU, vlanAlias, master.Attrs().MTU)
	}
	for _, c := range []*testContainer{a, b} {
		if got := c.state(t, testIf).Parent; got != v.Attrs().Index {
			t.Errorf("%s's parent index = %d, want veth0.10's %d", c.id, got, v.Attrs().Index)
		}
		if err := f.check(l, c.rt()); err != nil {
			t.Errorf("CHECK %s: %v", c.id, err)
		}
	}

	peer10 := vlanPeer(t, p, 10, "10.60.10.1/24")
	for _, ip := range []string{ipA, ipB} {
		if err := pingOK(p.ns, ip); err != nil {
			t.Errorf("the peer's VLAN 10 interface cannot reach %s: %v", ip, err)
		}
	}
	if err := p.h.LinkDel(peer10); err != nil {
		t.Fatal(err)
	}
	vlanPeer(t, p, 20, "10.60.10.1/24")
	for _, ip := range []string{ipA, ipB} {
		if err := pingFails(p.ns, ip); err != nil {
			t.Errorf("a peer on VLAN 20: %v", err)
		}
	}

	if err := f.del(l, a.rt()); err != nil {
		t.Fatalf("DEL a: %v", err)
	}
	if _, err := f.hostH.LinkByName("veth0.10"); err != nil {
		t.Errorf("veth0.10 after the first DEL: %v", err)
	}
	if err := f.check(l, b.rt()); err != nil {
		t.Errorf("CHECK b after a's DEL: %v", err)
	}
	if err := f.del(l, b.rt()); err != nil {
		t.Fatalf("DEL b: %v", err)
	}
	if got := f.vlanLinks(); len(got) > 0 {
		t.Errorf("VLAN links after both DELs: %v", got)
	}
	f.requireNothingLeft(a)
	f.requireNothingLeft(b)
}

// TestIntegrationVLANExisting: a VLAN 10 link of the master that the
// plugin did not make, whatever its name, is used and kept.
func TestIntegrationVLANExisting(t *testing.T) {
	f := newNetFixture(t)
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "tenant10", ParentIndex: f.master.Attrs().Index}, VlanId: 10}
	if err := f.hostH.LinkAdd(v); err != nil {
		t.Fatalf("ip link add link master0 name tenant10 type vlan id 10: %v", err)
	}
	existing, err := f.hostH.LinkByName("tenant10")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.hostH.LinkSetUp(existing); err != nil {
		t.Fatal(err)
	}
	l := f.list("1.1.0", f.plugin(map[string]any{"vlan": 10}))
	c := f.newContainer("vlan-existing")
	f.mustAdd(l, c.rt())
	if got := c.state(t, testIf).Parent; got != existing.Attrs().Index {
		t.Errorf("parent index = %d, want tenant10's %d", got, existing.Attrs().Index)
	}
	want := []string{"tenant10 10 "}
	if got := f.vlanLinks(); !slices.Equal(got, want) {
		t.Errorf("VLAN links = %v, want %v", got, want)
	}
	if err := f.check(l, c.rt()); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	wantCNIError(t, f.check(f.list("1.1.0", f.plugin(map[string]any{"vlan": 11})), c.rt()), ErrCheckFailed, "vlan 11")
	if err := f.del(l, c.rt()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if got := f.vlanLinks(); !slices.Equal(got, want) {
		t.Errorf("VLAN links after DEL = %v, want %v kept", got, want)
	}
	if err := f.gc(l); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := f.vlanLinks(); !slices.Equal(got, want) {
		t.Errorf("VLAN links after GC = %v, want %v kept", got, want)
	}
	f.requireNothingLeft(c)
}

// TestIntegrationVLANGC: GC deletes the plugin's VLAN link when its last
// attachment is no longer valid, and keeps it while a valid one is.
func TestIntegrationVLANGC(t *testing.T) {
	f := newNetFixture(t)
	l := f.list("1.1.0", f.plugin(map[string]any{"vlan": 10}))
	keep := f.newContainer("vlan-gc-keep")
	stale := f.newContainer("vlan-gc-stale")
	f.mustAdd(l, keep.rt())
	other := *f
	other.cni = libcniWithCache(t)
	other.mustAdd(l, stale.rt())
	if err := f.gc(l, keep.attachment()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := f.vlanLinks(); len(got) != 1 {
		t.Errorf("VLAN links after GC with a valid attachment: %v, want master0.10", got)
	}
	if err := f.check(l, keep.rt()); err != nil {
		t.Errorf("CHECK the valid attachment after GC: %v", err)
	}
	// The runtime removed both containers without DEL.
	for _, c := range []*testContainer{keep, stale} {
		if err := c.h.LinkDel(c.link(t, testIf)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.gc(l); err != nil {
		t.Fatalf("GC with no valid attachment: %v", err)
	}
	if got := f.vlanLinks(); len(got) > 0 {
		t.Errorf("VLAN links after the last GC: %v", got)
	}
}

// TestIntegrationVLANConcurrent: 32 ADD/DEL pairs at once on one VLAN: no
// error, every container's link sits on the VLAN link while it exists, and
// the VLAN link is gone at the end.
func TestIntegrationVLANConcurrent(t *testing.T) {
	const n = 32
	f := newNetFixture(t)
	l := f.list("1.1.0", f.plugin(map[string]any{"vlan": 10}))
	containers := make([]*testContainer, n)
	for i := range containers {
		containers[i] = f.newContainer(fmt.Sprintf("vlan-concurrent-%02d", i))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range containers {
		wg.Go(func() {
			if _, err := f.add(l, c.rt()); err != nil {
				errs[i] = fmt.Errorf("ADD: %w", err)
				return
			}
			link, err := c.h.LinkByName(testIf)
			if err != nil {
				errs[i] = err
				return
			}
			parent, err := f.hostH.LinkByIndex(link.Attrs().ParentIndex)
			if v, ok := parent.(*netlink.Vlan); err != nil || !ok || v.VlanId != 10 {
				errs[i] = fmt.Errorf("the link's parent %v (%v) is not VLAN 10", parent, err)
			}
			if err := f.del(l, c.rt()); err != nil {
				errs[i] = errors.Join(errs[i], fmt.Errorf("DEL: %w", err))
			}
		})
	}
	wg.Wait()
	for i, c := range containers {
		if errs[i] != nil {
			t.Errorf("%s: %v", c.id, errs[i])
		}
		f.requireNothingLeft(c)
	}
	if got := f.vlanLinks(); len(got) > 0 {
		t.Errorf("VLAN links after all DELs: %v", got)
	}
}

// TestIntegrationVLANBadInputs: each refused with its code, and no VLAN
// link, container link or lease left.
func TestIntegrationVLANBadInputs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vlan    any
		mtu     int
		premade int // MTU of a VLAN 10 link made before ADD, 0 for none
		want    []string
	}{
		{name: "zero", vlan: 0, want: []string{"vlan", "0"}},
		{name: "4095", vlan: 4095, want: []string{"vlan", "4095"}},
		{name: "fraction", vlan: 10.5, want: []string{"vlan", "10.5"}},
		{name: "string", vlan: "10", want: []string{"vlan", `"10"`}},
		{name: "mtu-above-vlan-link", vlan: 10, mtu: 1450, premade: 1400, want: []string{"mtu", "1450", "1400"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t)
			var keep []string
			if tc.premade != 0 {
				v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "master0.10", ParentIndex: f.master.Attrs().Index, MTU: tc.premade}, VlanId: 10}
				if err := f.hostH.LinkAdd(v); err != nil {
					t.Fatal(err)
				}
				keep = []string{"master0.10 10 "}
			}
			fields := map[string]any{"vlan": tc.vlan}
			if tc.mtu != 0 {
				fields["mtu"] = tc.mtu
			}
			c := f.newContainer("vlan-bad-" + tc.name)
			_, err := f.add(f.list("1.1.0", f.plugin(fields)), c.rt())
			wantCNIError(t, err, types.ErrInvalidNetworkConfig, tc.want...)
			f.requireNothingLeft(c)
			if got := f.vlanLinks(); !slices.Equal(got, keep) {
				t.Errorf("VLAN links = %v, want %v", got, keep)
			}
		})
	}
}

// TestIntegrationHostAccessOnVLAN: hostAccess and vlan together. The host
// has its address on its own VLAN 10 interface of veth0 (made by the
// operator, so the plugin uses and keeps it); two containers on VLAN 10
// with hostAccess are reached by the host (ping and TCP) and reach the
// host's VLAN address, and a peer's VLAN 10 interface at the far end of
// the veth reaches both. After both DELs the shim and its routes are gone
// and the operator's VLAN interface is kept, with its address.
func TestIntegrationHostAccessOnVLAN(t *testing.T) {
	const hostVLANAddr = "10.60.10.254"
	f := newNetFixture(t)
	master, p := f.addPeer("192.168.99.1/24")
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "mgmt10", ParentIndex: master.Attrs().Index}, VlanId: 10}
	if err := f.hostH.LinkAdd(v); err != nil {
		t.Fatalf("ip link add link veth0 name mgmt10 type vlan id 10: %v", err)
	}
	sub, err := f.hostH.LinkByName("mgmt10")
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(hostVLANAddr + "/24")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.hostH.AddrAdd(sub, a); err != nil {
		t.Fatalf("ip addr add %s dev mgmt10: %v", a, err)
	}
	if err := f.hostH.LinkSetUp(sub); err != nil {
		t.Fatal(err)
	}
	vlanPeer(t, p, 10, "10.60.10.1/24")

	ipam := hostLocalIPAM(f.dataDir, ipRange{"subnet": "10.60.10.0/24", "rangeStart": "10.60.10.5", "rangeEnd": "10.60.10.50"})
	l := f.list("1.1.0", f.plugin(map[string]any{"master": "veth0", "vlan": 10, "hostAccess": true, "ipam": ipam}))
	ca := f.newContainer("hostaccess-vlan-a")
	cb := f.newContainer("hostaccess-vlan-b")
	ips := map[*testContainer]string{ca: bareIPs(f.mustAdd(l, ca.rt()))[0], cb: bareIPs(f.mustAdd(l, cb.rt()))[0]}

	shim := "ipvh" + strconv.Itoa(sub.Attrs().Index)
	if _, err := f.hostH.LinkByName(shim); err != nil {
		t.Fatalf("the host-side interface %s on mgmt10: %v", shim, err)
	}
	for _, c := range []*testContainer{ca, cb} {
		ip := ips[c]
		if got := c.state(t, testIf).Parent; got != sub.Attrs().Index {
			t.Errorf("%s's parent index = %d, want mgmt10's %d", c.id, got, sub.Attrs().Index)
		}
		if err := pingOK(f.host, ip); err != nil {
			t.Errorf("the host cannot ping %s %s: %v", c.id, ip, err)
		}
		if err := tcpOK(f.host, c.ns, ip); err != nil {
			t.Errorf("the host cannot connect to %s: %v", c.id, err)
		}
		if err := pingOK(c.ns, hostVLANAddr); err != nil {
			t.Errorf("%s cannot ping the host's VLAN address: %v", c.id, err)
		}
		if err := tcpOK(c.ns, f.host, hostVLANAddr); err != nil {
			t.Errorf("%s cannot connect to the host: %v", c.id, err)
		}
		if err := pingOK(p.ns, ip); err != nil {
			t.Errorf("the peer's VLAN 10 interface cannot reach %s: %v", ip, err)
		}
		if err := f.check(l, c.rt()); err != nil {
			t.Errorf("CHECK %s: %v", c.id, err)
		}
	}

	if err := f.del(l, ca.rt()); err != nil {
		t.Fatalf("DEL a: %v", err)
	}
	if err := pingOK(f.host, ips[cb]); err != nil {
		t.Errorf("after a's DEL the host cannot ping b: %v", err)
	}
	if err := f.del(l, cb.rt()); err != nil {
		t.Fatalf("DEL b: %v", err)
	}
	if got := linkNamesWhere(t, f.hostH, func(l netlink.Link) bool { return l.Type() == "ipvlan" }); len(got) > 0 {
		t.Errorf("ipvlan links left in the host netns: %v", got)
	}
	if got := f.hostRoutes(); len(got) > 0 {
		t.Errorf("the plugin's host routes left: %v", got)
	}
	if got := f.vlanLinks(); !slices.Equal(got, []string{"mgmt10 10 "}) {
		t.Errorf("VLAN links after both DELs = %v, want the operator's mgmt10 alone", got)
	}
	if got := globalAddrsOf(t, f.hostH, sub); !slices.Equal(got, []string{hostVLANAddr + "/24"}) {
		t.Errorf("mgmt10's addresses after both DELs = %v, want %s/24 kept", got, hostVLANAddr)
	}
	f.requireNothingLeft(ca)
	f.requireNothingLeft(cb)
}

// TestIntegrationVLANHandOver: the plugin's VLAN link passes from one
// group of containers to the next while both come and go. In each round
// the previous round's containers are deleted while the next round's are
// added, all at once, so that the last DEL of a group races the first ADD
// of the next. Deleting the VLAN link under a new slave would make the
// kernel delete the slave too, so after each round every container of it
// must still have its link on VLAN 10 and pass CHECK; after the last
// round's DELs the VLAN link is gone.
func TestIntegrationVLANHandOver(t *testing.T) {
	const rounds, perRound = 8, 4
	f := newNetFixture(t)
	l := f.list("1.1.0", f.plugin(map[string]any{"vlan": 10}))
	var prev []*testContainer
	var all []*testContainer
	for r := range rounds + 1 {
		var next []*testContainer
		if r < rounds {
			for i := range perRound {
				next = append(next, f.newContainer(fmt.Sprintf("vlan-handover-%d-%d", r, i)))
			}
		}
		all = append(all, next...)
		errs := make([]error, len(prev)+len(next))
		var wg sync.WaitGroup
		for i, c := range prev {
			wg.Go(func() {
				if err := f.del(l, c.rt()); err != nil {
					errs[i] = fmt.Errorf("DEL %s: %w", c.id, err)
				}
			})
		}
		for i, c := range next {
			wg.Go(func() {
				if _, err := f.add(l, c.rt()); err != nil {
					errs[len(prev)+i] = fmt.Errorf("ADD %s: %w", c.id, err)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		for _, c := range next {
			if !c.hasLink(t, testIf) {
				t.Fatalf("round %d: %s lost its link: its VLAN parent was deleted under it", r, c.id)
			}
			parent, err := f.hostH.LinkByIndex(c.state(t, testIf).Parent)
			if v, ok := parent.(*netlink.Vlan); err != nil || !ok || v.VlanId != 10 {
				t.Errorf("round %d: %s's parent %v (%v) is not VLAN 10", r, c.id, parent, err)
			}
			if err := f.check(l, c.rt()); err != nil {
				t.Errorf("round %d: CHECK %s: %v", r, c.id, err)
			}
		}
		prev = next
	}
	if got := f.vlanLinks(); len(got) > 0 {
		t.Errorf("VLAN links after the last DELs: %v", got)
	}
	for _, c := range all {
		f.requireNothingLeft(c)
	}
}
