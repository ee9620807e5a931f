package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func addOne(t *testing.T, l *lan, c *container, timeout string) *current.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := cniConfig(t).AddNetworkList(ctx, network(t, l.socket, timeout), c.rt())
	if err != nil {
		t.Fatalf("ADD %s: %v", c.id, err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 {
		t.Fatalf("ADD %s: %d addresses, want 1", c.id, len(res.IPs))
	}
	return res
}

// TestConcurrentAddsOneMaster: ten attachments on one master (one MAC),
// ADDed at once, each get their own lease, seen in dnsmasq's lease file
// under ten distinct client identifiers with the host name each provided
// and answered by broadcast; DEL releases each (dnsmasq drops it) and
// leaves nothing in the daemon's state.
func TestConcurrentAddsOneMaster(t *testing.T) {
	l := newLAN(t)
	l.startDnsmasq("192.0.2.10", "192.0.2.200")
	l.startDaemon()
	const n = 10
	cs := make([]*container, n)
	for i := range cs {
		cs[i] = l.container(fmt.Sprintf("c%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list := network(t, l.socket, "20s", `"provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"}]`)
	cn := cniConfig(t)
	results := addAll(ctx, t, cn, list, cs, func(f func() error) error { return f() })
	for i, c := range cs {
		if gw := results[i].IPs[0].Gateway.String(); gw != "192.0.2.1" {
			t.Errorf("%s: gateway %s, want 192.0.2.1", c.id, gw)
		}
	}
	server := l.serverLeases()
	if len(server) != n {
		t.Errorf("dnsmasq holds %d leases, want %d: %v", len(server), n, server)
	}
	for i, c := range cs {
		sl, ok := server[clientID(key(c.id))]
		if !ok {
			t.Errorf("dnsmasq has no lease for %s's client identifier %s", c.id, clientID(key(c.id)))
			continue
		}
		if got := results[i].IPs[0].Address.IP.String(); sl.Addr.String() != got {
			t.Errorf("%s: dnsmasq leased %s, ADD returned %s", c.id, sl.Addr, got)
		}
		if sl.Hostname != "pod-"+c.id {
			t.Errorf("%s: dnsmasq knows it as %q, want pod-%s (provide host-name fromArg K8S_POD_NAME)", c.id, sl.Hostname, c.id)
		}
	}
	if b, _ := os.ReadFile(l.dnsmasqLog); !strings.Contains(string(b), "broadcast response") {
		t.Errorf("dnsmasq sent no broadcast response: the broadcast flag was not set")
	}
	if got := len(l.daemonLeases()); got != n {
		t.Errorf("daemon keeps %d leases, want %d", got, n)
	}

	for _, c := range cs {
		if err := cn.DelNetworkList(ctx, list, c.rt()); err != nil {
			t.Errorf("DEL %s: %v", c.id, err)
		}
	}
	eventually(t, 10*time.Second, func() error {
		if s := l.serverLeases(); len(s) != 0 {
			return fmt.Errorf("dnsmasq still holds %d leases after DEL: %v", len(s), s)
		}
		return nil
	})
	if recs := l.daemonLeases(); len(recs) != 0 {
		t.Errorf("daemon keeps %d leases after DEL", len(recs))
	}
	// DEL again: nothing to do, success.
	if err := cn.DelNetworkList(ctx, list, cs[0].rt()); err != nil {
		t.Errorf("second DEL: %v", err)
	}
}

// TestRenewalSurvivesSIGKILL: the daemon renews before expiry (at 5% of
// dnsmasq's two-minute lease, -renew-at 0.05, so the test waits seconds),
// killed with SIGKILL and restarted it renews the leases it finds on
// disk, and a lease whose namespace went without a DEL is released.
func TestRenewalSurvivesSIGKILL(t *testing.T) {
	l := newLAN(t)
	l.startDnsmasq("192.0.2.10", "192.0.2.200")
	d := l.startDaemon("-renew-at", "0.05")
	a, b := l.container("a"), l.container("b")
	addOne(t, l, a, "10s")
	addOne(t, l, b, "10s")
	first := l.serverLeases()
	renewedSince := func(before map[string]leaseExpiry, ids ...string) func() error {
		return func() error {
			now := l.serverLeases()
			for _, id := range ids {
				cid := clientID(key(id))
				if now[cid].Expiry <= before[cid] {
					return fmt.Errorf("lease of %s not renewed: expiry %d, before %d", id, now[cid].Expiry, before[cid])
				}
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, renewedSince(expiries(first), "a", "b"))

	d.kill()
	before := expiries(l.serverLeases())
	d = l.startDaemon("-renew-at", "0.05")
	eventually(t, 30*time.Second, renewedSince(before, "a", "b"))
	if !strings.Contains(d.output(), "resuming lease") {
		t.Errorf("the restarted daemon did not say it resumed the leases:\n%s", d.output())
	}

	// b's namespace goes without DEL: the daemon releases its lease.
	deleteNS(b.ns)
	eventually(t, 30*time.Second, func() error {
		s := l.serverLeases()
		if _, ok := s[clientID(key("b"))]; ok {
			return fmt.Errorf("dnsmasq still leases to b, whose namespace is gone")
		}
		if _, ok := s[clientID(key("a"))]; !ok {
			return fmt.Errorf("a's lease is gone too")
		}
		return nil
	})
	eventually(t, 5*time.Second, func() error {
		if recs := l.daemonLeases(); len(recs) != 1 || recs[0].Key != key("a") {
			return fmt.Errorf("daemon keeps %d leases, want a's alone", len(recs))
		}
		return nil
	})
}

type leaseExpiry = int64

func expiries(m map[string]dnsmasqLease) map[string]leaseExpiry {
	out := map[string]leaseExpiry{}
	for k, v := range m {
		out[k] = v.Expiry
	}
	return out
}

// TestNAKDuringRenewal: a server that no longer has the address NAKs the
// renewal; the daemon takes the address off the container's interface,
// forgets the lease and says so.
func TestNAKDuringRenewal(t *testing.T) {
	l := newLAN(t)
	srv := l.startDnsmasq("192.0.2.10", "192.0.2.100")
	d := l.startDaemon("-renew-at", "0.05")
	c := l.container("c")
	res := addOne(t, l, c, "10s")
	c.apply(t, &res.IPs[0].Address)

	// The server restarts with its leases lost and a range without the
	// address: authoritative, it refuses the renewal.
	srv.kill()
	if err := os.Remove(l.leases); err != nil {
		t.Fatal(err)
	}
	l.startDnsmasq("192.0.2.150", "192.0.2.200", "--dhcp-authoritative")
	// The daemon takes the address off, then forgets the lease.
	eventually(t, 30*time.Second, func() error {
		if as := c.addrs(t); len(as) != 0 {
			return fmt.Errorf("eth0 still holds %v", as)
		}
		if recs := l.daemonLeases(); len(recs) != 0 {
			return fmt.Errorf("daemon keeps %d leases after the NAK", len(recs))
		}
		return nil
	})
	if !strings.Contains(d.output(), "DHCPNAK") {
		t.Errorf("the daemon's log does not tell of the NAK:\n%s", d.output())
	}
}

// TestNoServer: with no server answering, ADD fails within its timeout
// naming the interface and the master searched, leaves nothing behind,
// and no lease is taken later when a server appears.
func TestNoServer(t *testing.T) {
	l := newLAN(t)
	l.startDaemon()
	c := l.container("c")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	_, err := cniConfig(t).AddNetworkList(ctx, network(t, l.socket, "2s"), c.rt())
	elapsed := time.Since(start)
	wantCode(t, err, types.ErrTryAgainLater, "eth0", "m0", "no DHCP server answered")
	if elapsed > 2*time.Second+callSlack {
		t.Errorf("ADD failed after %s, beyond its timeout of 2s", elapsed)
	}
	if recs := l.daemonLeases(); len(recs) != 0 {
		t.Errorf("daemon keeps %d leases after a failed ADD", len(recs))
	}
	// A master the daemon's namespace does not have is a configuration
	// error.
	bad, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.1.0","name":"lan","plugins":[{"type":"dhcp","master":"nope0",
		"ipam":{"type":"dhcp","daemonSocketPath":"` + l.socket + `","timeout":"2s"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cniConfig(t).AddNetworkList(ctx, bad, c.rt())
	wantCode(t, err, types.ErrInvalidNetworkConfig, `master "nope0"`)
	l.startDnsmasq("192.0.2.10", "192.0.2.200")
	// Give a late exchange the time of a retransmission to show.
	time.Sleep(5 * time.Second)
	if s := l.serverLeases(); len(s) != 0 {
		t.Errorf("dnsmasq leased %v after the ADD failed", s)
	}
}

// TestCheckAndGC: CHECK passes when the interface holds the live lease and
// fails when it does not; GC releases the leases of attachments not in
// cni.dev/valid-attachments.
func TestCheckAndGC(t *testing.T) {
	l := newLAN(t)
	l.startDnsmasq("192.0.2.10", "192.0.2.200")
	l.startDaemon()
	cs := []*container{l.container("a"), l.container("b"), l.container("c")}
	for _, c := range cs {
		res := addOne(t, l, c, "10s")
		if c.id == "a" {
			c.apply(t, &res.IPs[0].Address)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list := network(t, l.socket, "10s")
	cn := cniConfig(t)
	if err := cn.CheckNetworkList(ctx, list, cs[0].rt()); err != nil {
		t.Errorf("CHECK a: %v", err)
	}
	if err := cn.CheckNetworkList(ctx, list, cs[1].rt()); err == nil || !strings.Contains(err.Error(), "does not hold its lease") {
		t.Errorf("CHECK b, whose eth0 has no address: %v, want an error saying so", err)
	}

	// GC straight through the binary, as a runtime calls a plugin.
	gc := `{"cniVersion":"1.1.0","name":"lan","type":"dhcp","master":"m0",
		"ipam":{"type":"dhcp","daemonSocketPath":"` + l.socket + `"},
		"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "dhcp"))
	cmd.Env = []string{"CNI_COMMAND=GC", "CNI_PATH=" + binDir}
	cmd.Stdin = strings.NewReader(gc)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("GC: %v: %s", err, out.String())
	}
	eventually(t, 10*time.Second, func() error {
		s := l.serverLeases()
		if _, ok := s[clientID(key("a"))]; len(s) != 1 || !ok {
			return fmt.Errorf("dnsmasq leases %v, want a's alone", s)
		}
		return nil
	})
	if recs := l.daemonLeases(); len(recs) != 1 || recs[0].Key != key("a") {
		t.Errorf("daemon keeps %d leases after GC, want a's alone", len(recs))
	}
}

// TestDelWithDaemonDown: DEL succeeds with the daemon down; the daemon,
// started again, finds the namespace gone and releases the lease.
func TestDelWithDaemonDown(t *testing.T) {
	l := newLAN(t)
	l.startDnsmasq("192.0.2.10", "192.0.2.200")
	d := l.startDaemon()
	c := l.container("c")
	addOne(t, l, c, "10s")
	d.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cniConfig(t).DelNetworkList(ctx, network(t, l.socket, "10s"), c.rt()); err != nil {
		t.Fatalf("DEL with the daemon down: %v, want success", err)
	}
	deleteNS(c.ns)
	if s := l.serverLeases(); len(s) != 1 {
		t.Fatalf("dnsmasq holds %d leases before the daemon is back, want 1", len(s))
	}
	l.startDaemon()
	eventually(t, 10*time.Second, func() error {
		if s := l.serverLeases(); len(s) != 0 {
			return fmt.Errorf("dnsmasq still holds %v", s)
		}
		if recs := l.daemonLeases(); len(recs) != 0 {
			return fmt.Errorf("daemon keeps %d leases", len(recs))
		}
		return nil
	})
}
