package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// TestIPVlanModes runs the project's ipvlan plugin with dhcp as its IPAM,
// as a runtime would (libcni, from the host namespace), in each mode:
// ten containers on one master ADDed at once get ten leases under ten
// client identifiers, their interfaces hold the addresses, each reaches
// the LAN peer (in l3 and l3s after the peer's neighbour entries for the
// containers, the set-up the README gives), the daemon renews every lease,
// and DEL releases them all. It needs ipvlan: it runs in the VM.
func TestIPVlanModes(t *testing.T) {
	testenv.RequireKernel(t)
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) { testIPVlanMode(t, mode) })
	}
}

func testIPVlanMode(t *testing.T, mode string) {
	l := newLAN(t)
	l.startDnsmasq("192.0.2.10", "192.0.2.200")
	l.startDaemon("-renew-at", "0.05")
	conf := `{"cniVersion":"1.1.0","name":"lan","plugins":[{"type":"ipvlan","master":"m0","mode":"` + mode + `",
		"ipam":{"type":"dhcp","daemonSocketPath":"` + l.socket + `","timeout":"60s"}}]}`
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	cn := cniConfig(t)
	const n = 10
	cs := make([]*container, n)
	for i := range cs {
		cs[i] = &container{id: fmt.Sprintf("%s-c%d", mode, i), ns: testenv.NewNS(t)}
		cs[i].h = testenv.Handle(t, cs[i].ns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The plugin is run from the host namespace, where the master is.
	inHost := func(f func() error) error { return l.host.Do(func(ns.NetNS) error { return f() }) }

	results := addAll(ctx, t, cn, list, cs, inHost)
	for i, c := range cs {
		a := results[i].IPs[0].Address
		if got := c.addrs(t); len(got) != 1 || !got[0].IP.Equal(a.IP) {
			t.Errorf("%s: eth0 holds %v, want %s", c.id, got, a.String())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	server := l.serverLeases()
	if len(server) != n {
		t.Errorf("dnsmasq holds %d leases, want %d", len(server), n)
	}
	for _, c := range cs {
		if _, ok := server[clientID(key(c.id))]; !ok {
			t.Errorf("dnsmasq has no lease for %s's client identifier", c.id)
		}
	}

	if mode != "l2" {
		// In l3 and l3s the slaves answer no ARP: the LAN's peer needs a
		// neighbour entry for each container, at the master's MAC.
		master, err := testenv.Handle(t, l.host).LinkByName("m0")
		if err != nil {
			t.Fatal(err)
		}
		lh := testenv.Handle(t, l.lanNS)
		lan0, err := lh.LinkByName("lan0")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			neigh := &netlink.Neigh{LinkIndex: lan0.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: r.IPs[0].Address.IP, HardwareAddr: master.Attrs().HardwareAddr}
			if err := lh.NeighSet(neigh); err != nil {
				t.Fatalf("ip neigh replace %s lladdr %s dev lan0: %v", r.IPs[0].Address.IP, master.Attrs().HardwareAddr, err)
			}
		}
	}
	for _, c := range cs {
		if err := ping(c.ns, net.ParseIP("192.0.2.1")); err != nil {
			t.Errorf("%s cannot reach the LAN peer: %v", c.id, err)
		}
	}

	before := expiries(server)
	eventually(t, 60*time.Second, func() error {
		now := l.serverLeases()
		for _, c := range cs {
			cid := clientID(key(c.id))
			if now[cid].Expiry <= before[cid] {
				return fmt.Errorf("lease of %s not renewed", c.id)
			}
		}
		return nil
	})

	for _, c := range cs {
		if err := inHost(func() error { return cn.DelNetworkList(ctx, list, c.rt()) }); err != nil {
			t.Errorf("DEL %s: %v", c.id, err)
		}
	}
	eventually(t, 20*time.Second, func() error {
		if s := l.serverLeases(); len(s) != 0 {
			return fmt.Errorf("dnsmasq still holds %d leases after DEL", len(s))
		}
		return nil
	})
	if recs := l.daemonLeases(); len(recs) != 0 {
		t.Errorf("daemon keeps %d leases after DEL", len(recs))
	}
}

// ping sends one echo request from namespace n (busybox's ping in the
// guest).
func ping(n ns.NetNS, to net.IP) error {
	return n.Do(func(ns.NetNS) error {
		out, err := exec.Command("ping", "-c", "1", "-W", "5", to.String()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s: %w: %s", to, err, out)
		}
		return nil
	})
}
