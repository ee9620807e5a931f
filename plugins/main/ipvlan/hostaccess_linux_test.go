//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// The host's addresses on the master in the hostAccess tests.
const (
	hostV4 = "10.10.0.1"
	hostV6 = "fd00:10::1"
)

// hostAccessFixture is a netFixture whose master carries the host's
// addresses, with a dual-stack host-local configuration.
func hostAccessFixture(t *testing.T) *netFixture {
	t.Helper()
	f := newNetFixture(t)
	for _, cidr := range []string{hostV4 + "/24", hostV6 + "/64"} {
		a, err := netlink.ParseAddr(cidr)
		if err != nil {
			t.Fatal(err)
		}
		a.Flags = unix.IFA_F_NODAD
		if err := f.hostH.AddrAdd(f.master, a); err != nil {
			t.Fatalf("ip addr add %s dev %s: %v", cidr, testMaster, err)
		}
	}
	return f
}

// hostAccessPlugin is the plugin config with hostAccess in mode, dual stack.
func (f *netFixture) hostAccessPlugin(mode string, fields map[string]any) map[string]any {
	all := map[string]any{
		"mode":       mode,
		"hostAccess": true,
		"ipam":       hostLocalIPAM(f.dataDir, subnetRange(testSubnet), subnetRange("fd00:10::/64")),
	}
	maps.Copy(all, fields) // a nil value removes the key, as plugin does
	return f.plugin(all)
}

// tcpOK listens on ip in the namespace to and connects from the namespace
// from: the server writes a line, which the client must read.
func tcpOK(from, to ns.NetNS, ip string) error {
	var ln net.Listener
	err := to.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", ip, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "hello\n")
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	var got []byte
	err = from.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return fmt.Errorf("connect to %s port %d: %w", ip, port, err)
	}
	if string(got) != "hello\n" {
		return fmt.Errorf("connect to %s port %d: read %q, want %q", ip, port, got, "hello\n")
	}
	return nil
}

// hostRoutes lists the host's routes with the plugin's protocol as
// "dst dev name".
func (f *netFixture) hostRoutes() []string {
	f.t.Helper()
	routes, err := f.hostH.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: hostRouteProtocol, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		f.t.Fatalf("ip route show proto %d: %v", hostRouteProtocol, err)
	}
	var out []string
	for _, r := range routes {
		name := strconv.Itoa(r.LinkIndex)
		if l, err := f.hostH.LinkByIndex(r.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		out = append(out, r.Dst.String()+" dev "+name)
	}
	slices.Sort(out)
	return out
}

// hostAddrs lists the global addresses of every link in the host netns as
// "name addr".
func (f *netFixture) hostAddrs() []string {
	f.t.Helper()
	links, err := f.hostH.LinkList()
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		for _, a := range globalAddrsOf(f.t, f.hostH, l) {
			out = append(out, l.Attrs().Name+" "+a)
		}
	}
	slices.Sort(out)
	return out
}

// requireNoHostAccessLeft checks that the host netns has no shim (no
// ipvlan link at all), no route of the plugin's and no address but the
// master's.
func (f *netFixture) requireNoHostAccessLeft() {
	f.t.Helper()
	if got := linkNamesWhere(f.t, f.hostH, func(l netlink.Link) bool { return l.Type() == "ipvlan" }); len(got) > 0 {
		f.t.Errorf("ipvlan links left in the host netns: %v", got)
	}
	if got := f.hostRoutes(); len(got) > 0 {
		f.t.Errorf("routes with protocol %d left in the host netns: %v", hostRouteProtocol, got)
	}
	want := []string{testMaster + " " + hostV4 + "/24", testMaster + " " + hostV6 + "/64"}
	if got := f.hostAddrs(); !slices.Equal(got, want) {
		f.t.Errorf("host addresses = %v, want only the master's %v", got, want)
	}
}

// reachBothWays checks that the host pings and connects to every address
// of c, and that c pings and connects to the host's addresses.
func (f *netFixture) reachBothWays(t *testing.T, c *testContainer, ips []string) {
	t.Helper()
	for _, ip := range ips {
		if err := pingOK(f.host, ip); err != nil {
			t.Errorf("host cannot ping %s %s: %v", c.id, ip, err)
		}
		if err := tcpOK(f.host, c.ns, ip); err != nil {
			t.Errorf("host cannot connect to %s: %v", c.id, err)
		}
	}
	for _, ip := range []string{hostV4, hostV6} {
		if err := pingOK(c.ns, ip); err != nil {
			t.Errorf("%s cannot ping the host's %s: %v", c.id, ip, err)
		}
		if err := tcpOK(c.ns, f.host, ip); err != nil {
			t.Errorf("%s cannot connect to the host: %v", c.id, err)
		}
	}
}

// TestIntegrationHostAccess: in each mode, two dual-stack containers with
// hostAccess; the host reaches each of their addresses (ping and TCP) and
// each reaches the host's addresses on the master; CHECK and STATUS pass;
// after the first DEL the other is still reached; after both nothing the
// plugin made is left on the host.
func TestIntegrationHostAccess(t *testing.T) {
	for _, mode := range []string{"l2", "l3", "l3s"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := hostAccessFixture(t)
			l := f.list("1.1.0", f.hostAccessPlugin(mode, nil))
			a := f.newContainer("hostaccess-a-" + mode)
			b := f.newContainer("hostaccess-b-" + mode)
			ipsA := bareIPs(f.mustAdd(l, a.rt()))
			ipsB := bareIPs(f.mustAdd(l, b.rt()))
			if len(ipsA) != 2 || len(ipsB) != 2 {
				t.Fatalf("addresses %v and %v, want two each", ipsA, ipsB)
			}

			shim := "ipvh" + strconv.Itoa(f.master.Attrs().Index)
			sl, err := f.hostH.LinkByName(shim)
			if err != nil {
				t.Fatalf("the host-side interface %s: %v", shim, err)
			}
			if f := sl.Attrs().RawFlags; f&unix.IFF_NOARP == 0 || f&unix.IFF_UP == 0 {
				t.Errorf("%s flags %#x: want up and NOARP", shim, f)
			}
			var wantRoutes []string
			for _, ip := range append(slices.Clone(ipsA), ipsB...) {
				wantRoutes = append(wantRoutes, hostNet(net.ParseIP(ip)).String()+" dev "+shim)
			}
			slices.Sort(wantRoutes)
			if got := f.hostRoutes(); !slices.Equal(got, wantRoutes) {
				t.Errorf("host routes = %v, want %v", got, wantRoutes)
			}
			if got := f.hostAddrs(); len(got) != 2 {
				t.Errorf("host addresses = %v, want the master's two only", got)
			}

			f.reachBothWays(t, a, ipsA)
			f.reachBothWays(t, b, ipsB)
			for _, c := range []*testContainer{a, b} {
				if err := f.check(l, c.rt()); err != nil {
					t.Errorf("CHECK %s: %v", c.id, err)
				}
			}
			if err := f.status(l); err != nil {
				t.Errorf("STATUS: %v", err)
			}

			if err := f.del(l, a.rt()); err != nil {
				t.Fatalf("DEL a: %v", err)
			}
			for _, ip := range ipsB {
				if err := pingOK(f.host, ip); err != nil {
					t.Errorf("after a's DEL the host cannot ping b's %s: %v", ip, err)
				}
			}
			if err := f.check(l, b.rt()); err != nil {
				t.Errorf("CHECK b after a's DEL: %v", err)
			}
			if got := len(f.hostRoutes()); got != 2 {
				t.Errorf("after a's DEL: %d host routes %v, want b's two", got, f.hostRoutes())
			}
			if err := f.del(l, b.rt()); err != nil {
				t.Fatalf("DEL b: %v", err)
			}
			f.requireNoHostAccessLeft()
			f.requireNothingLeft(a)
			f.requireNothingLeft(b)
		})
	}
}

// TestIntegrationNoHostAccess: without hostAccess the host still cannot
// reach the container, nor the container the host.
func TestIntegrationNoHostAccess(t *testing.T) {
	f := hostAccessFixture(t)
	l := f.list("1.1.0", f.hostAccessPlugin("l2", map[string]any{"hostAccess": nil}))
	c := f.newContainer("no-hostaccess")
	ips := bareIPs(f.mustAdd(l, c.rt()))
	for _, ip := range ips {
		if err := pingFails(f.host, ip); err != nil {
			t.Errorf("host reaches the container without hostAccess: %v", err)
		}
	}
	if err := pingFails(c.ns, hostV4); err != nil {
		t.Errorf("container reaches the host without hostAccess: %v", err)
	}
	if got := f.hostRoutes(); len(got) > 0 {
		t.Errorf("host routes without hostAccess: %v", got)
	}
	if err := f.del(l, c.rt()); err != nil {
		t.Fatal(err)
	}
	f.requireNoHostAccessLeft()
}

// TestIntegrationHostAccessDelWithoutNetns: DEL after the container's
// namespace is gone still removes its host routes and the shim (from the
// addresses recorded at ADD).
func TestIntegrationHostAccessDelWithoutNetns(t *testing.T) {
	f := hostAccessFixture(t)
	l := f.list("1.1.0", f.hostAccessPlugin("l2", nil))
	c := f.newContainer("hostaccess-gone")
	f.mustAdd(l, c.rt())
	c.h.Close()
	if err := c.ns.Close(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(c.ns.Path(), unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount the container netns: %v", err)
	}
	if err := os.Remove(c.ns.Path()); err != nil {
		t.Fatal(err)
	}
	if err := f.del(l, c.rt()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	f.requireNoHostAccessLeft()
}

// TestIntegrationHostAccessGC: GC removes the host routes of an
// attachment the runtime no longer lists, keeps the valid one's, and
// removes the shim with the last.
func TestIntegrationHostAccessGC(t *testing.T) {
	f := hostAccessFixture(t)
	l := f.list("1.1.0", f.hostAccessPlugin("l2", nil))
	keep := f.newContainer("gc-keep")
	stale := f.newContainer("gc-stale")
	ipsKeep := bareIPs(f.mustAdd(l, keep.rt()))
	other := *f
	other.cni = libcniWithCache(t) // libcni's own GC does not see it
	other.mustAdd(l, stale.rt())
	if got := len(f.hostRoutes()); got != 4 {
		t.Fatalf("host routes before GC: %v, want four", f.hostRoutes())
	}
	if err := f.gc(l, keep.attachment()); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var want []string
	shim := "ipvh" + strconv.Itoa(f.master.Attrs().Index)
	for _, ip := range ipsKeep {
		want = append(want, hostNet(net.ParseIP(ip)).String()+" dev "+shim)
	}
	slices.Sort(want)
	if got := f.hostRoutes(); !slices.Equal(got, want) {
		t.Errorf("host routes after GC = %v, want %v", got, want)
	}
	for _, ip := range ipsKeep {
		if err := pingOK(f.host, ip); err != nil {
			t.Errorf("after GC the host cannot reach the valid container's %s: %v", ip, err)
		}
	}
	if err := f.gc(l); err != nil {
		t.Fatalf("GC with no valid attachment: %v", err)
	}
	f.requireNoHostAccessLeft()
}

// TestIntegrationHostAccessStatusCheck: with the shim deleted under a
// container, STATUS reports it (code 50) and CHECK fails naming it.
func TestIntegrationHostAccessStatusCheck(t *testing.T) {
	f := hostAccessFixture(t)
	l := f.list("1.1.0", f.hostAccessPlugin("l2", nil))
	c := f.newContainer("hostaccess-status")
	f.mustAdd(l, c.rt())
	shim := "ipvh" + strconv.Itoa(f.master.Attrs().Index)
	if err := f.hostH.LinkDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: shim}}); err != nil {
		t.Fatalf("ip link del %s: %v", shim, err)
	}
	wantCNIError(t, f.status(l), types.ErrPluginNotAvailable, shim)
	wantCNIError(t, f.check(l, c.rt()), ErrCheckFailed, shim)
	if err := f.del(l, c.rt()); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if err := f.status(l); err != nil {
		t.Errorf("STATUS after DEL: %v", err)
	}
	f.requireNoHostAccessLeft()
}

// TestIntegrationHostAccessBadInputs: each refused with code 7 naming the
// cause, and nothing left.
func TestIntegrationHostAccessBadInputs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields map[string]any
		setup  func(t *testing.T, f *netFixture)
		want   []string
	}{
		{name: "linkInContainer", fields: map[string]any{"linkInContainer": true}, want: []string{"hostAccess", "linkInContainer"}},
		{name: "private", fields: map[string]any{"flag": "private"}, want: []string{"hostAccess", `"private"`}},
		{name: "vepa", fields: map[string]any{"flag": "vepa"}, want: []string{"hostAccess", `"vepa"`}},
		{name: "not-boolean", fields: map[string]any{"hostAccess": "yes"}, want: []string{"hostAccess"}},
		{name: "strict-rp_filter", want: []string{"rp_filter", testMaster},
			setup: func(t *testing.T, f *netFixture) {
				err := f.host.Do(func(ns.NetNS) error {
					return os.WriteFile("/proc/sys/net/ipv4/conf/"+testMaster+"/rp_filter", []byte("1"), 0o644)
				})
				if err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := hostAccessFixture(t)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			c := f.newContainer("hostaccess-bad-" + tc.name)
			_, err := f.add(f.list("1.1.0", f.hostAccessPlugin("l2", tc.fields)), c.rt())
			code := uint(types.ErrInvalidNetworkConfig)
			if tc.name == "not-boolean" {
				code = types.ErrDecodingFailure
			}
			wantCNIError(t, err, code, tc.want...)
			f.requireNothingLeft(c)
			f.requireNoHostAccessLeft()
		})
	}
}

// server is a TCP listener in a container's namespace answering every
// connection with a line.
type server struct {
	ln   net.Listener
	addr string
}

func listenIn(n ns.NetNS, ip string) (*server, error) {
	var ln net.Listener
	err := n.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", ip, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello\n")
			c.Close()
		}
	}()
	return &server{ln: ln, addr: ln.Addr().String()}, nil
}

// dialOK connects to addr from the namespace n and reads the server's line.
func dialOK(n ns.NetNS, addr string) error {
	return n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		got, err := io.ReadAll(c)
		if err == nil && string(got) != "hello\n" {
			err = fmt.Errorf("read %q", got)
		}
		return err
	})
}

// TestIntegrationHostAccessConcurrent runs 32 ADD/DEL pairs with
// hostAccess at once on one master, so that the shim is made and deleted
// while others use it. A sampler connects from the host to every container
// that is live (between its ADD's end and its DEL's start) again and
// again: every connection must succeed, and nothing is left at the end.
func TestIntegrationHostAccessConcurrent(t *testing.T) {
	const n = 32
	f := hostAccessFixture(t)
	l := f.list("1.1.0", f.hostAccessPlugin("l2", nil))
	containers := make([]*testContainer, n)
	for i := range containers {
		containers[i] = f.newContainer(fmt.Sprintf("hostaccess-concurrent-%02d", i))
	}
	var (
		mu      sync.Mutex
		live    = map[string]*liveServer{} // by server address
		fails   []string
		samples int
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			addrs := make([]string, 0, len(live))
			for a := range live {
				addrs = append(addrs, a)
			}
			mu.Unlock()
			for _, a := range addrs {
				err := dialOK(f.host, a)
				mu.Lock()
				// A container whose DEL began meanwhile is no longer live.
				if ls, still := live[a]; still {
					if err != nil {
						fails = append(fails, fmt.Sprintf("%s: %v", ls.id, err))
					}
					ls.once.Do(func() { close(ls.seen) })
				}
				samples++
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	errs := make([]error, n)
	addTook := make([]time.Duration, n)
	delTook := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i, c := range containers {
		wg.Go(func() {
			start := time.Now()
			res, err := f.add(l, c.rt())
			addTook[i] = time.Since(start)
			if err != nil {
				errs[i] = fmt.Errorf("ADD: %w", err)
				_ = f.del(l, c.rt()) // as a runtime does after a failed ADD
				return
			}
			var servers []*server
			for _, ip := range bareIPs(asCurrent(t, res)) {
				s, err := listenIn(c.ns, ip)
				if err != nil {
					errs[i] = err
					break
				}
				servers = append(servers, s)
				if err := dialOK(f.host, s.addr); err != nil {
					errs[i] = errors.Join(errs[i], fmt.Errorf("host connects to %s right after ADD: %w", s.addr, err))
				}
			}
			// Live until the sampler has connected to each address once
			// while the others come and go.
			var seen []chan struct{}
			mu.Lock()
			for _, s := range servers {
				ls := &liveServer{id: c.id, seen: make(chan struct{})}
				live[s.addr] = ls
				seen = append(seen, ls.seen)
			}
			mu.Unlock()
			for _, ch := range seen {
				select {
				case <-ch:
				case <-time.After(time.Minute):
					errs[i] = errors.Join(errs[i], errors.New("the sampler never got to it"))
				}
			}
			mu.Lock()
			for _, s := range servers {
				delete(live, s.addr)
			}
			mu.Unlock()
			for _, s := range servers {
				s.ln.Close()
			}
			start = time.Now()
			if err := f.del(l, c.rt()); err != nil {
				errs[i] = errors.Join(errs[i], fmt.Errorf("DEL: %w", err))
			}
			delTook[i] = time.Since(start)
		})
	}
	wg.Wait()
	close(stop)
	slices.Sort(addTook)
	slices.Sort(delTook)
	t.Logf("ADD took %v to %v (median %v), DEL %v to %v (median %v)", addTook[0], addTook[n-1], addTook[n/2], delTook[0], delTook[n-1], delTook[n/2])
	<-sampled
	for i, c := range containers {
		if errs[i] != nil {
			t.Errorf("%s: %v", c.id, errs[i])
		}
		f.requireNothingLeft(c)
	}
	t.Logf("%d connections sampled", samples)
	if samples < 2*n {
		t.Errorf("only %d connections sampled: the test did not test what it says", samples)
	}
	for _, e := range fails {
		t.Errorf("a live container was not reached: %s", e)
	}
	f.requireNoHostAccessLeft()
}

type liveServer struct {
	id   string
	seen chan struct{}
	once sync.Once
}

// TestAddRollbackSharedParts makes ADD with hostAccess on VLAN 10 fail
// right after each of its steps: no container link, lease, shim, VLAN link
// or host route is left. Without a failure, DEL leaves nothing either.
func TestAddRollbackSharedParts(t *testing.T) {
	testenv.RequireKernel(t)
	steps := []addStep{stepVLAN, stepCreate, stepIPAM, stepSettings, stepAddress, stepUp, stepRoute, stepHostAccess}
	newEnv := func(t *testing.T) *addEnv {
		e := newAddEnv(t)
		var m map[string]any
		if err := json.Unmarshal(e.args.StdinData, &m); err != nil {
			t.Fatal(err)
		}
		m["hostAccess"], m["vlan"] = true, 10
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		e.args.StdinData = b
		if e.conf, err = parseConfig(b); err != nil {
			t.Fatal(err)
		}
		return e
	}
	assertHostClean := func(t *testing.T, e *addEnv) {
		t.Helper()
		h := testenv.Handle(t, e.hostNS)
		if got := linkNamesWhere(t, h, func(l netlink.Link) bool { return l.Type() == "ipvlan" || l.Type() == "vlan" }); len(got) > 0 {
			t.Errorf("links left in the host netns: %v", got)
		}
		routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: hostRouteProtocol, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil || len(routes) > 0 {
			t.Errorf("host routes with protocol %d left: %v (%v)", hostRouteProtocol, routes, err)
		}
	}
	for _, step := range steps {
		t.Run(string(step), func(t *testing.T) {
			e := newEnv(t)
			injected := fmt.Errorf("injected failure after %s", step)
			_, _, err := e.add(func(s addStep) error {
				if s == step {
					return injected
				}
				return nil
			})
			if !errors.Is(err, injected) {
				t.Fatalf("add = %v, want the injected failure", err)
			}
			e.assertClean(t)
			assertHostClean(t, e)
		})
	}
	t.Run("no failure", func(t *testing.T) {
		e := newEnv(t)
		if _, _, err := e.add(nil); err != nil {
			t.Fatalf("add: %v", err)
		}
		h := testenv.Handle(t, e.hostNS)
		if got := linkNamesWhere(t, h, func(l netlink.Link) bool { return l.Type() == "ipvlan" || l.Type() == "vlan" }); len(got) != 2 {
			t.Errorf("host links after ADD = %v, want the VLAN link and the shim", got)
		}
		if err := e.hostNS.Do(func(ns.NetNS) error { return cmdDel(e.args) }); err != nil {
			t.Fatalf("del: %v", err)
		}
		e.assertClean(t)
		assertHostClean(t, e)
	})
}
