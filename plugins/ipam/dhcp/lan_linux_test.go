package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/daemon"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

// The LAN of these tests: dnsmasq in namespace "lan" on lan0
// (192.0.2.1/24), the other end of a veth whose end m0 is the master in a
// host-like namespace, where the daemon runs. The daemon speaks DHCP on m0
// for every attachment, each with its own client identifier: the path of
// ipvlan's l3 and l3s modes (and of ADD in l2), which needs no ipvlan.

// requireLAN skips the test without root or dnsmasq; under CI=true and
// in the VM guest it fails instead.
func requireLAN(t testing.TB) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" || testenv.InVM() {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("needs root (network namespaces, a packet socket)")
	}
	p, err := exec.LookPath("dnsmasq")
	if err != nil {
		if p, err = exec.LookPath("/usr/sbin/dnsmasq"); err != nil {
			fail("needs dnsmasq (make deps installs dnsmasq-base): %v", err)
		}
	}
	return p
}

type lan struct {
	t       testing.TB
	dir     string
	dnsmasq string
	host    ns.NetNS
	lanNS   ns.NetNS
	socket  string
	state   string
	leases  string // dnsmasq's lease file
	// dnsmasqLog is dnsmasq's log (--log-dhcp).
	dnsmasqLog string
}

func newLAN(t testing.TB) *lan {
	l := &lan{t: t, dnsmasq: requireLAN(t), dir: t.TempDir()}
	l.socket = filepath.Join(l.dir, "dhcp.sock")
	l.state = filepath.Join(l.dir, "state")
	l.leases = filepath.Join(l.dir, "dnsmasq.leases")
	l.host = testenv.NewNS(t)
	l.lanNS = testenv.NewNS(t)
	hh := testenv.Handle(t, l.host)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "m0"}, PeerName: "lan0", PeerNamespace: netlink.NsFd(int(l.lanNS.Fd()))}
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatalf("ip link add m0 type veth peer name lan0 netns lan: %v", err)
	}
	setUp(t, hh, "m0", "")
	setUp(t, testenv.Handle(t, l.lanNS), "lan0", "192.0.2.1/24")
	return l
}

func setUp(t testing.TB, h *netlink.Handle, name, addr string) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "" {
		a, _ := netlink.ParseAddr(addr)
		if err := h.AddrAdd(link, a); err != nil {
			t.Fatalf("ip addr add %s dev %s: %v", addr, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("ip link set %s up: %v", name, err)
	}
	return link
}

// process is a program the test started in a namespace.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (l *lan) start(n ns.NetNS, name string, args ...string) *process {
	l.t.Helper()
	logPath := filepath.Join(l.dir, fmt.Sprintf("%s-%d.log", filepath.Base(name), time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The child is forked from a thread in n: it lives in n. (No
	// Pdeathsig: ns.Do's thread exits after the fork, which would fire it;
	// the test's cleanup kills the child.)
	if err := n.Do(func(ns.NetNS) error { return cmd.Start() }); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	l.t.Cleanup(func() { p.kill() })
	return p
}

func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *process) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// startDnsmasq serves first-last of 192.0.2.0/24 with two-minute leases
// (dnsmasq's shortest) and writes its lease file. --no-ping: dnsmasq
// otherwise pings each new address and waits up to 3 s for an answer,
// serving one new address at a time meanwhile.
func (l *lan) startDnsmasq(first, last string, extra ...string) *process {
	l.t.Helper()
	logPath := filepath.Join(l.dir, "dnsmasq-dhcp.log")
	// --no-daemon: in the foreground; --user= and --group= empty: no
	// change of user, whose lookup needs an /etc/passwd (the VM guest has
	// none).
	args := append([]string{"--no-daemon", "--user=", "--group=", "--conf-file=/dev/null", "--port=0",
		"--interface=lan0", "--bind-interfaces", "--no-ping", "--pid-file=",
		"--dhcp-range=" + first + "," + last + ",255.255.255.0,2m",
		"--dhcp-leasefile=" + l.leases, "--dhcp-option=option:router,192.0.2.1",
		"--dhcp-option=option:dns-server,192.0.2.1", "--log-dhcp", "--log-facility=" + logPath}, extra...)
	p := l.start(l.lanNS, l.dnsmasq, args...)
	l.dnsmasqLog = logPath
	eventually(l.t, 10*time.Second, func() error {
		b, _ := os.ReadFile(logPath)
		if !strings.Contains(string(b), "DHCP, sockets bound exclusively to interface lan0") {
			return fmt.Errorf("dnsmasq not ready: %s%s", b, p.output())
		}
		return nil
	})
	return p
}

// startDaemon runs `dhcp daemon` in the host namespace and waits until it
// answers.
func (l *lan) startDaemon(args ...string) *process {
	l.t.Helper()
	args = append([]string{"daemon", "-socketpath", l.socket, "-leasedir", l.state}, args...)
	p := l.start(l.host, filepath.Join(binDir, "dhcp"), args...)
	eventually(l.t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := daemon.Call(ctx, l.socket, &daemon.Request{Verb: daemon.VerbStatus})
		if err != nil {
			return fmt.Errorf("%v: %s", err, p.output())
		}
		return nil
	})
	return p
}

// dnsmasqLease is a line of dnsmasq's lease file.
type dnsmasqLease struct {
	Expiry   int64
	Addr     netip.Addr
	Hostname string
	ClientID string
}

// serverLeases reads dnsmasq's lease file, by client identifier.
func (l *lan) serverLeases() map[string]dnsmasqLease {
	l.t.Helper()
	f, err := os.Open(l.leases)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	m := map[string]dnsmasqLease{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 {
			continue
		}
		var e int64
		fmt.Sscan(fs[0], &e)
		m[fs[4]] = dnsmasqLease{Expiry: e, Addr: netip.MustParseAddr(fs[2]), Hostname: fs[3], ClientID: fs[4]}
	}
	return m
}

// daemonLeases reads the daemon's lease directory.
func (l *lan) daemonLeases() []*leases.Record {
	l.t.Helper()
	s, err := leases.Open(l.state)
	if err != nil {
		l.t.Fatal(err)
	}
	recs, err := s.List()
	if err != nil {
		l.t.Fatal(err)
	}
	return recs
}

// clientID is k's client identifier as dnsmasq writes it.
func clientID(k leases.Key) string {
	id := ClientID(k)
	parts := make([]string, len(id))
	for i, b := range id {
		parts[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(parts, ":")
}

func key(id string) leases.Key { return leases.Key{Network: "lan", ContainerID: id, IfName: "eth0"} }

// container is a namespace with an eth0 (a veth whose peer stays there),
// standing in for the container's ipvlan slave.
type container struct {
	id string
	ns ns.NetNS
	h  *netlink.Handle
}

func (l *lan) container(id string) *container {
	n := testenv.NewNS(l.t)
	h := testenv.Handle(l.t, n)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		l.t.Fatalf("ip link add eth0 type veth: %v", err)
	}
	setUp(l.t, h, "eth0", "")
	return &container{id: id, ns: n, h: h}
}

// deleteNS deletes n before the test's cleanup does (which then finds
// nothing to do).
func deleteNS(n ns.NetNS) {
	n.Close()
	_ = testutils.UnmountNS(n)
}

func (c *container) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.id, NetNS: c.ns.Path(), IfName: "eth0",
		Args: [][2]string{{"K8S_POD_NAME", "pod-" + c.id}}}
}

// apply puts addr on eth0, as the ipvlan plugin does with the result.
func (c *container) apply(t testing.TB, addr *net.IPNet) {
	t.Helper()
	l, err := c.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.h.AddrAdd(l, &netlink.Addr{IPNet: addr}); err != nil {
		t.Fatalf("ip addr add %s dev eth0: %v", addr, err)
	}
}

func (c *container) addrs(t testing.TB) []netlink.Addr {
	t.Helper()
	l, err := c.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := c.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// eventually polls f until it succeeds or timeout passes: the daemon and
// dnsmasq are other processes, working on their own schedule.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// addAll ADDs every container at once, each ADD run through in (from the
// namespace the plugin must run in), and fails the test unless each ADD
// succeeded with an address of its own. The results are in cs's order.
func addAll(ctx context.Context, t testing.TB, cn *libcni.CNIConfig, list *libcni.NetworkConfigList, cs []*container, in func(func() error) error) []*current.Result {
	t.Helper()
	results := make([]*current.Result, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = in(func() error {
				r, err := cn.AddNetworkList(ctx, list, c.rt())
				if err != nil {
					return err
				}
				results[i], err = current.NewResultFromResult(r)
				return err
			})
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i, c := range cs {
		if errs[i] != nil {
			t.Errorf("ADD %s: %v", c.id, errs[i])
			continue
		}
		if len(results[i].IPs) != 1 {
			t.Errorf("ADD %s: %d addresses, want 1", c.id, len(results[i].IPs))
			continue
		}
		a := results[i].IPs[0].Address.String()
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s both got %s", other, c.id, a)
		}
		seen[a] = c.id
	}
	if t.Failed() {
		t.FailNow()
	}
	return results
}
