//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/nldump"
)

// verbTimeout bounds one invocation, IPAM included.
const verbTimeout = 2 * time.Minute

var (
	netlinkModes = map[Mode]netlink.IPVlanMode{
		ModeL2: netlink.IPVLAN_MODE_L2, ModeL3: netlink.IPVLAN_MODE_L3, ModeL3S: netlink.IPVLAN_MODE_L3S,
	}
	netlinkFlags = map[Flag]netlink.IPVlanFlag{
		FlagBridge: netlink.IPVLAN_FLAG_BRIDGE, FlagPrivate: netlink.IPVLAN_FLAG_PRIVATE, FlagVEPA: netlink.IPVLAN_FLAG_VEPA,
	}
)

// addStep names the steps of ADD, in order, for tests that make one fail.
type addStep string

const (
	stepCreate  addStep = "create"  // ip link add ... netns CNI_NETNS (temporary name)
	stepRename  addStep = "rename"  // ip link set <tmp> name CNI_IFNAME
	stepIPAM    addStep = "ipam"    // IPAM ADD (or prevResult's addresses)
	stepSysctl  addStep = "sysctl"  // arp_notify, ndisc_notify, disable_ipv6
	stepAddress addStep = "address" // ip addr add
	stepUp      addStep = "up"      // ip link set up
	stepRoute   addStep = "route"   // ip route add
)

// failpoint lets tests fail ADD right after a step has run; nil in the
// plugin.
type failpoint func(addStep) error

func (f failpoint) after(s addStep) error {
	if f == nil {
		return nil
	}
	return f(s)
}

// session holds what a verb needs: the container's namespace and netlink
// handles bound to it and to the namespace the plugin was started in.
type session struct {
	args   *skel.CmdArgs
	conf   *NetConf
	netns  ns.NetNS        // the container's
	cont   *netlink.Handle // bound to the container's namespace
	host   *netlink.Handle // bound to the plugin's own namespace
	master *netlink.Handle // host, or cont with linkInContainer
}

func openSession(args *skel.CmdArgs, conf *NetConf) (*session, error) {
	s := &session{args: args, conf: conf}
	n, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("open CNI_NETNS %q: %v", args.Netns, err), "")
	}
	s.netns = n
	if s.cont, err = netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink handle in %s: %w", args.Netns, err)
	}
	if s.host, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		s.close()
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	s.master = s.host
	if conf.LinkInContainer {
		s.master = s.cont
	}
	return s, nil
}

func (s *session) close() {
	if s.host != nil {
		s.host.Close()
	}
	if s.cont != nil {
		s.cont.Close()
	}
	if s.netns != nil {
		s.netns.Close()
	}
}

// runVerb parses the configuration and runs verb under verbTimeout: what
// every skel entry point does first.
func runVerb(args *skel.CmdArgs, verb func(context.Context, *skel.CmdArgs, *NetConf) error) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	return verb(ctx, args, conf)
}

func cmdAdd(args *skel.CmdArgs) error {
	return runVerb(args, func(ctx context.Context, args *skel.CmdArgs, conf *NetConf) error {
		_, out, err := add(ctx, args, conf, nil)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	})
}

// add creates the container's ipvlan interface and configures it, and
// returns the result and the result encoded in the configuration's
// cniVersion, as types.PrintResult would print it. On any error every step
// already taken is undone: no link, no lease remains.
func add(ctx context.Context, args *skel.CmdArgs, conf *NetConf, fail failpoint) (_ *current.Result, _ []byte, err error) {
	if err := validateIfName(args.IfName); err != nil {
		return nil, nil, err
	}
	if err := conf.requireAddressSource(); err != nil {
		return nil, nil, err
	}
	s, err := openSession(args, conf)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()

	master, err := s.resolveMaster()
	if err != nil {
		return nil, nil, err
	}
	if conf.MTU > master.Attrs().MTU {
		return nil, nil, invalidConfig("invalid mtu %d: above the MTU %d of master %q", conf.MTU, master.Attrs().MTU, master.Attrs().Name)
	}
	if _, err := s.cont.LinkByName(args.IfName); err == nil {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_IFNAME %q: a link of that name already exists in %s", args.IfName, args.Netns), "")
	}

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	// IPAM and the link need nothing from each other until the addresses
	// are configured: lease while the kernel makes the link.
	addresses := s.startAddresses(ctx, &undo)

	link, err := s.createLink(master)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { _ = s.cont.LinkDel(link) })
	if err := fail.after(stepCreate); err != nil {
		return nil, nil, err
	}

	// The result needs the lease and the link's MAC, not its final name:
	// build and encode it while the kernel renames the link (the rename
	// waits for an RCU grace period). Meanwhile the sysctls' thread enters
	// the container's namespace, and the announcement goes out of the
	// master, its socket closed while the rename holds rtnl (see
	// announcement).
	result := s.startResult(link.Attrs().HardwareAddr, addresses)
	setSysctls, abandonSysctls := s.startSysctls()
	undo = append(undo, abandonSysctls)
	announce := s.startAnnouncement(master, addresses)
	undo = append(undo, announce.abandon)

	runtime.LockOSThread()
	announce.renameStarted(unix.Gettid())
	renameErr := s.cont.LinkSetName(link, args.IfName)
	announce.renameDone()
	runtime.UnlockOSThread()
	if renameErr != nil {
		if errors.Is(renameErr, unix.EEXIST) {
			return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables,
				fmt.Sprintf("CNI_IFNAME %q: a link of that name already exists in %s", args.IfName, args.Netns), "")
		}
		return nil, nil, fmt.Errorf("ip link set %s name %s: %w", link.Attrs().Name, args.IfName, renameErr)
	}
	link.Attrs().Name = args.IfName
	if err := fail.after(stepRename); err != nil {
		return nil, nil, err
	}

	addrs, err := addresses()
	if err != nil {
		return nil, nil, err
	}
	if err := fail.after(stepIPAM); err != nil {
		return nil, nil, err
	}

	if err := setSysctls(planSysctls(addrs, s.conf.KeepIPv6, !announce.sentByMaster())); err != nil {
		return nil, nil, err
	}
	if err := fail.after(stepSysctl); err != nil {
		return nil, nil, err
	}

	if err := s.addAddresses(link, addrs); err != nil {
		return nil, nil, err
	}
	if err := fail.after(stepAddress); err != nil {
		return nil, nil, err
	}

	if err := s.cont.LinkSetUp(link); err != nil {
		return nil, nil, fmt.Errorf("ip link set %s up: %w", args.IfName, err)
	}
	if err := fail.after(stepUp); err != nil {
		return nil, nil, err
	}

	if err := s.addRoutes(link, addrs); err != nil {
		return nil, nil, err
	}
	if err := fail.after(stepRoute); err != nil {
		return nil, nil, err
	}
	announce.wait()
	return result()
}

// createLink adds the ipvlan link in the container's namespace under a
// temporary name, so a failure can never leave a half-made CNI_IFNAME:
// ip link add link <master> name <tmp> netns <container> type ipvlan mode <mode> <flag>.
func (s *session) createLink(master netlink.Link) (netlink.Link, error) {
	tmp := tempName()
	attrs := netlink.LinkAttrs{Name: tmp, ParentIndex: master.Attrs().Index, MTU: s.conf.MTU}
	if !s.conf.LinkInContainer {
		attrs.Namespace = netlink.NsFd(int(s.netns.Fd()))
	}
	iv := &netlink.IPVlan{LinkAttrs: attrs, Mode: netlinkModes[s.conf.Mode], Flag: netlinkFlags[s.conf.Flag]}
	if err := s.master.LinkAdd(iv); err != nil {
		if errors.Is(err, unix.EBUSY) {
			if mv := s.macvlanOn(master); mv != "" {
				return nil, invalidConfig("master %q already carries macvlan link %q: the kernel does not mix macvlan and ipvlan on one master", master.Attrs().Name, mv)
			}
		}
		return nil, fmt.Errorf("ip link add link %s type ipvlan mode %s %s: %w", master.Attrs().Name, s.conf.Mode, s.conf.Flag, err)
	}
	link, err := s.cont.LinkByName(tmp)
	if err != nil {
		// Created but not found: delete it wherever it is.
		_ = s.master.LinkDel(iv)
		return nil, fmt.Errorf("look up new link %s: %w", tmp, err)
	}
	return link, nil
}

// macvlanOn names a macvlan or macvtap link on master, if there is one.
func (s *session) macvlanOn(master netlink.Link) string {
	links, err := nldump.Retry(s.master.LinkList)
	if err != nil {
		return ""
	}
	for _, l := range links {
		if (l.Type() == "macvlan" || l.Type() == "macvtap") && l.Attrs().ParentIndex == master.Attrs().Index {
			return l.Attrs().Name
		}
	}
	return ""
}

// tempName is the name a link is created under before it is renamed to
// CNI_IFNAME: it only has to differ from the other links in the container's
// namespace. math/rand/v2 is seeded by the runtime; crypto/rand would add
// its packages' initialisation to every start.
func tempName() string {
	return fmt.Sprintf("ipvl%08x", rand.Uint32())
}

// resolveMaster finds the master: the configured one, else the single
// interface of prevResult, else the interface of the default route.
func (s *session) resolveMaster() (netlink.Link, error) {
	name := s.conf.Master
	if name == "" {
		var err error
		if name, err = s.implicitMaster(); err != nil {
			return nil, err
		}
	}
	return lookupMaster(s.master, name, s.conf.LinkInContainer)
}

func (s *session) implicitMaster() (string, error) {
	if prev := s.conf.prev(); prev != nil {
		name, found, err := masterFromPrevResult(prev, s.args.IfName, s.args.Netns)
		if err != nil || found {
			return name, err
		}
	}
	l, err := defaultRouteLink(s.master)
	if err != nil {
		return "", invalidConfig("master is omitted and %v", err)
	}
	return l.Attrs().Name, nil
}

func lookupMaster(h *netlink.Handle, name string, inContainer bool) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		where := "the host namespace"
		if inContainer {
			where = "the container namespace (linkInContainer)"
		}
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, invalidConfig("master %q not found in %s", name, where)
		}
		return nil, fmt.Errorf("look up master %q: %w", name, err)
	}
	return l, nil
}

// defaultRouteLink is the interface of the first IPv4, else IPv6, default
// route in the main table.
func defaultRouteLink(h *netlink.Handle) (netlink.Link, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := nldump.Retry(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			index := r.LinkIndex
			if index == 0 && len(r.MultiPath) > 0 {
				index = r.MultiPath[0].LinkIndex
			}
			if index == 0 {
				continue
			}
			l, err := h.LinkByIndex(index)
			if err != nil {
				return nil, fmt.Errorf("look up default route interface %d: %w", index, err)
			}
			return l, nil
		}
	}
	return nil, errors.New("there is no default route to take it from")
}

// startAddresses starts getting the interface's addresses, from IPAM or
// from prevResult, and returns a function that waits for them. The lease's
// release is registered as an undo step at once: it waits for IPAM to
// finish, so a failure anywhere never leaves a lease behind, even one that
// a failed IPAM ADD took.
func (s *session) startAddresses(ctx context.Context, undo *[]func()) func() (*current.Result, error) {
	if s.conf.IPAM.Type == "" {
		prev := s.conf.prev()
		res := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: prev.IPs, Routes: prev.Routes, DNS: prev.DNS}
		return func() (*current.Result, error) { return res, nil }
	}
	i := ipam{s.args, s.conf}
	var (
		res  *current.Result
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		res, err = i.add(ctx)
	}()
	*undo = append(*undo, func() {
		<-done
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = i.del(ctx)
	})
	return func() (*current.Result, error) {
		<-done
		return res, err
	}
}

// startSysctls prepares the interface's sysctls (see planSysctls) on a
// thread of its own in the container's namespace. It returns a function
// that hands the thread the plan and waits for its writes, and one that
// lets it go without writing.
//
// Started before the rename, the thread enters the namespace and looks up
// the sysctl directories while the kernel renames the link. The first
// lookup of /proc/sys/net/ipv4 or /proc/sys/net/ipv6 in a namespace is
// slow on a host with many: every namespace that has looked them up has an
// entry of the same name under the same parent in the kernel's dentry
// cache, and a lookup compares them one by one until it meets its own: the
// first meets none and walks them all (~8 ms each with 2,000 containers in
// the VM). It then adds the namespace's own entry at the head, and the
// writes take well under a millisecond.
func (s *session) startSysctls() (set func(sysctls) error, abandon func()) {
	planc := make(chan sysctls, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.netns.Do(func(ns.NetNS) error {
			for _, dir := range []string{"/proc/sys/net/ipv4/conf", "/proc/sys/net/ipv6/conf"} {
				_ = unix.Access(dir, unix.F_OK) // only to look it up: the writes report errors
			}
			plan, ok := <-planc
			if !ok {
				return nil
			}
			return plan.write(s.args.IfName)
		})
	}()
	var once sync.Once
	set = func(plan sysctls) error {
		once.Do(func() { planc <- plan })
		return <-done
	}
	abandon = func() { once.Do(func() { close(planc) }) }
	return set, abandon
}

// sysctls are the interface's sysctls ADD sets before it comes up.
type sysctls struct {
	arpNotify   bool // the kernel sends a gratuitous ARP on up
	ndiscNotify bool // the kernel sends an unsolicited neighbour advertisement on up
	disableIPv6 bool // no IPv6 on the interface
}

// planSysctls says which sysctls an interface with addrs gets.
//
// When ADD has not announced the addresses out of the master itself (see
// announcement), arp_notify and ndisc_notify make the kernel announce them
// when the link comes up: a gratuitous ARP for IPv4, an unsolicited
// neighbour advertisement for IPv6. Peers holding a stale neighbour entry
// for a reused address then learn the master's MAC at once. In l3 and l3s
// modes the device has NOARP and the kernel sends no ARP, as it should.
//
// An interface given IPv4 addresses only gets IPv6 turned off
// (disable_ipv6), unless keepIPv6 is set: otherwise the kernel would give
// it a link-local address and run IPv6 autoconfiguration on it, and on a
// master with many slaves that traffic is multiplied by every slave.
func planSysctls(addrs *current.Result, keepIPv6, kernelAnnounces bool) sysctls {
	v4, v6 := families(addrs)
	return sysctls{
		arpNotify:   v4 && kernelAnnounces,
		ndiscNotify: v6 && kernelAnnounces,
		disableIPv6: v4 && !v6 && !keepIPv6,
	}
}

// write sets the sysctls of the interface ifName in the current namespace.
// An interface the kernel gave no IPv6 at all has no disable_ipv6: a
// kernel without IPv6 (ipv6.disable=1), or an MTU below IPv6's minimum of
// 1280; there is nothing to turn off.
func (p sysctls) write(ifName string) error {
	if p.arpNotify {
		if err := writeSysctl(filepath.Join("/proc/sys/net/ipv4/conf", ifName, "arp_notify"), "1"); err != nil {
			return err
		}
	}
	if p.ndiscNotify {
		if err := writeSysctl(filepath.Join("/proc/sys/net/ipv6/conf", ifName, "ndisc_notify"), "1"); err != nil {
			return err
		}
	}
	if p.disableIPv6 {
		err := writeSysctl(filepath.Join("/proc/sys/net/ipv6/conf", ifName, "disable_ipv6"), "1")
		if err != nil && !errors.Is(err, fs.ErrNotExist) { // no IPv6 to turn off
			return err
		}
	}
	return nil
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

func families(r *current.Result) (v4, v6 bool) {
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}

// addAddresses adds every address to the link: ip addr add <addr> dev <if>.
// IPv6 addresses skip duplicate address detection (IPAM guarantees they are
// unique), so they are usable when ADD returns.
func (s *session) addAddresses(link netlink.Link, addrs *current.Result) error {
	for _, ip := range addrs.IPs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.Address.IP, Mask: ip.Address.Mask}}
		if ip.Address.IP.To4() == nil {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := s.cont.AddrAdd(link, a); err != nil {
			return fmt.Errorf("ip addr add %s dev %s: %w", ip.Address.String(), s.args.IfName, err)
		}
	}
	return nil
}

// addRoutes adds the result's routes through the link; a route without a
// gateway uses the gateway of an address of its family.
func (s *session) addRoutes(link netlink.Link, addrs *current.Result) error {
	var gw4, gw6 net.IP
	for _, ip := range addrs.IPs {
		switch {
		case ip.Gateway == nil:
		case ip.Gateway.To4() != nil && gw4 == nil:
			gw4 = ip.Gateway
		case ip.Gateway.To4() == nil && gw6 == nil:
			gw6 = ip.Gateway
		}
	}
	for _, r := range addrs.Routes {
		gw := r.GW
		if gw == nil {
			gw = gw6
			if r.Dst.IP.To4() != nil {
				gw = gw4
			}
		}
		dst := r.Dst
		rt := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &dst,
			Gw:        gw,
			MTU:       r.MTU,
			AdvMSS:    r.AdvMSS,
			Priority:  r.Priority,
		}
		if r.Table != nil {
			rt.Table = *r.Table
		}
		if r.Scope != nil {
			rt.Scope = netlink.Scope(*r.Scope)
		}
		if err := s.cont.RouteAdd(rt); err != nil {
			return fmt.Errorf("ip route add %s via %s dev %s: %w", dst.String(), gw, s.args.IfName, err)
		}
	}
	return nil
}

// startResult builds ADD's result from the addresses once they are known
// and encodes it, and returns a function that waits for both.
func (s *session) startResult(mac net.HardwareAddr, addresses func() (*current.Result, error)) func() (*current.Result, []byte, error) {
	var (
		res  *current.Result
		out  bytes.Buffer
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		var addrs *current.Result
		if addrs, err = addresses(); err != nil {
			return
		}
		res = s.result(mac, addrs)
		var versioned types.Result
		if versioned, err = res.GetAsVersion(s.conf.CNIVersion); err != nil {
			err = fmt.Errorf("convert the result to version %s: %w", s.conf.CNIVersion, err)
			return
		}
		if err = versioned.PrintTo(&out); err != nil {
			err = fmt.Errorf("encode the result: %w", err)
		}
	}()
	return func() (*current.Result, []byte, error) {
		<-done
		if err != nil {
			return nil, nil, err
		}
		return res, out.Bytes(), nil
	}
}

// result lists prevResult's interfaces followed by ours, with every
// address pointing at ours.
func (s *session) result(mac net.HardwareAddr, addrs *current.Result) *current.Result {
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, Routes: addrs.Routes, DNS: addrs.DNS}
	if prev := s.conf.prev(); prev != nil {
		res.Interfaces = append(res.Interfaces, prev.Interfaces...)
	}
	ours := len(res.Interfaces)
	res.Interfaces = append(res.Interfaces, &current.Interface{
		Name:    s.args.IfName,
		Mac:     mac.String(),
		Sandbox: s.args.Netns,
	})
	for _, ip := range addrs.IPs {
		c := *ip
		c.Interface = current.Int(ours)
		res.IPs = append(res.IPs, &c)
	}
	if res.DNS.Nameservers == nil && res.DNS.Domain == "" && res.DNS.Search == nil && res.DNS.Options == nil {
		res.DNS = s.conf.DNS
	}
	return res
}

// cmdDel removes the container's link and releases its lease. It is best
// effort and idempotent: a missing namespace, link or master is success,
// and IPAM is always asked to release.
//
// Deleting the link needs nothing from the configuration and is the
// longest part of DEL (the kernel waits for RCU grace periods). In the
// plugin, main's goroutine deletes it from the start (runDel) while skel
// reads stdin and this parses the configuration and releases the lease.
// An invalid configuration is still reported, with its code.
func cmdDel(args *skel.CmdArgs) error {
	linkErr := started.take().of(args.Netns, args.IfName)
	err := runVerb(args, releaseLease)
	if lerr := <-linkErr; err == nil {
		err = lerr
	}
	return err // as IPAM or the parser gave it: a *types.Error keeps its code
}

// deletion is a link deletion under way, for cmdDel to take.
type deletion struct {
	nsPath, ifName string
	err            <-chan error
}

var started deletion

// take returns the deletion runDel started, once; the zero deletion after.
func (d *deletion) take() deletion {
	s := *d
	*d = deletion{}
	return s
}

// of returns where the deletion of ifName in nsPath reports: d's if it is
// that deletion, else a new one's (skel read the same environment as
// runDel, but tests call cmdDel directly).
func (d deletion) of(nsPath, ifName string) <-chan error {
	if d.err != nil && d.nsPath == nsPath && d.ifName == ifName {
		return d.err
	}
	c := make(chan error, 1)
	go func() { c <- deleteLink(nsPath, ifName) }()
	return c
}

// runDel is main for DEL: skel and cmdDel run on a new goroutine while
// main's own deletes the link named by the environment, so the kernel's
// wait starts as soon as the process does. CNI_IFNAME has been validated.
// The new goroutine ends the process once both are done (main's is locked
// to a thread in the container's namespace, and waking it again would
// cost a thread switch). A DEL that skel refuses before cmdDel runs still
// deletes the link, as one whose configuration cmdDel refuses does;
// skel's error is reported.
func runDel(skelMain func() *types.Error, exit func(*types.Error)) {
	nsPath, ifName := os.Getenv("CNI_NETNS"), os.Getenv("CNI_IFNAME")
	linkErr := make(chan error, 1)
	started = deletion{nsPath, ifName, linkErr}
	go func() {
		err := skelMain()
		if c := started.take().err; c != nil {
			<-c // skel refused before cmdDel took it: let it finish whole
		}
		exit(err)
	}()
	linkErr <- deleteLink(nsPath, ifName)
	select {}
}

// releaseLease asks IPAM, if there is one, to release the container's lease.
func releaseLease(ctx context.Context, args *skel.CmdArgs, conf *NetConf) error {
	if conf.IPAM.Type == "" {
		return nil
	}
	return ipam{args, conf}.del(ctx)
}

// deleteLink deletes CNI_IFNAME in CNI_NETNS if it is an ipvlan link:
// ip -n <netns> link del <ifname>.
func deleteLink(nsPath, ifName string) error {
	if nsPath == "" || ifName == "" {
		return nil
	}
	n, err := ns.GetNS(nsPath)
	if err != nil {
		var notExist ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		if errors.As(err, &notExist) || errors.As(err, &notNS) {
			return nil
		}
		return fmt.Errorf("open CNI_NETNS %q: %w", nsPath, err)
	}
	defer n.Close()
	// The thread enters the container's namespace for good: it stays locked
	// to this goroutine, and the runtime ends a locked thread when its
	// goroutine exits (main's exits the process). Not coming back saves
	// reading the current namespace from /proc and a second setns.
	runtime.LockOSThread()
	if err := unix.Setns(int(n.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter CNI_NETNS %q: %w", nsPath, err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up %s in %s: %w", ifName, nsPath, err)
	}
	if l.Type() != "ipvlan" {
		return nil // not ours to delete
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("ip link del %s in %s: %w", ifName, nsPath, err)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error { return runVerb(args, check) }

// check compares the container's interface with the configuration and
// prevResult, and asks IPAM to check its lease.
func check(ctx context.Context, args *skel.CmdArgs, conf *NetConf) error {
	prev := conf.prev()
	if prev == nil {
		return invalidConfig("prevResult is required for CHECK")
	}
	if err := validateIfName(args.IfName); err != nil {
		return err
	}
	// IPAM checks its lease while the link is read back.
	ipamErr := make(chan error, 1)
	go func() {
		if conf.IPAM.Type == "" {
			ipamErr <- nil
			return
		}
		ipamErr <- ipam{args, conf}.check(ctx)
	}()
	if err := checkLink(args, conf, prev); err != nil {
		<-ipamErr
		return err
	}
	return <-ipamErr
}

// checkLink compares the container's interface with the configuration and
// prevResult.
func checkLink(args *skel.CmdArgs, conf *NetConf, prev *current.Result) error {
	s, err := openSession(args, conf)
	if err != nil {
		return err
	}
	defer s.close()
	master, err := s.resolveMaster()
	if err != nil {
		return err
	}
	l, err := s.cont.LinkByName(args.IfName)
	if err != nil {
		return checkFailed("interface %q not found in %s: %v", args.IfName, args.Netns, err)
	}
	iv, ok := l.(*netlink.IPVlan)
	if !ok {
		return checkFailed("interface %q is a %s link, want ipvlan", args.IfName, l.Type())
	}
	if iv.Mode != netlinkModes[conf.Mode] {
		return checkFailed("interface %q has mode %s, want mode %q", args.IfName, modeName(iv.Mode), conf.Mode)
	}
	if iv.Flag != netlinkFlags[conf.Flag] {
		return checkFailed("interface %q has flag %s, want flag %q", args.IfName, flagName(iv.Flag), conf.Flag)
	}
	if iv.Attrs().ParentIndex != master.Attrs().Index {
		return checkFailed("interface %q has parent index %d, want master %q (index %d)", args.IfName, iv.Attrs().ParentIndex, master.Attrs().Name, master.Attrs().Index)
	}
	wantMTU := conf.MTU
	if wantMTU == 0 {
		wantMTU = master.Attrs().MTU
	}
	if iv.Attrs().MTU != wantMTU {
		return checkFailed("interface %q has mtu %d, want %d", args.IfName, iv.Attrs().MTU, wantMTU)
	}
	return checkPrevResult(s.cont, iv, args, prev)
}

// checkPrevResult finds our interface in prevResult and checks that its
// addresses and the routes are on the link.
func checkPrevResult(h *netlink.Handle, link netlink.Link, args *skel.CmdArgs, prev *current.Result) error {
	ours := -1
	for i, intf := range prev.Interfaces {
		if intf.Name == args.IfName && intf.Sandbox == args.Netns {
			ours = i
		}
	}
	if ours < 0 {
		return checkFailed("prevResult has no interface %q in sandbox %q", args.IfName, args.Netns)
	}
	if mac := prev.Interfaces[ours].Mac; mac != "" && mac != link.Attrs().HardwareAddr.String() {
		return checkFailed("interface %q has mac %s, prevResult says %s", args.IfName, link.Attrs().HardwareAddr, mac)
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("ip addr show dev %s: %w", args.IfName, err)
	}
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface != ours {
			continue
		}
		found := false
		for _, a := range addrs {
			if a.IP.Equal(ip.Address.IP) && a.Mask.String() == ip.Address.Mask.String() {
				found = true
				break
			}
		}
		if !found {
			return checkFailed("interface %q lacks address %s", args.IfName, ip.Address.String())
		}
	}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("ip route show dev %s: %w", args.IfName, err)
	}
	for _, r := range prev.Routes {
		found := false
		for _, rt := range routes {
			if sameDst(rt.Dst, &r.Dst) && (r.GW == nil || r.GW.Equal(rt.Gw)) {
				found = true
				break
			}
		}
		if !found {
			return checkFailed("interface %q lacks route %s via %v", args.IfName, r.Dst.String(), r.GW)
		}
	}
	return nil
}

func sameDst(a, b *net.IPNet) bool {
	isDefault := func(n *net.IPNet) bool {
		if n == nil {
			return true
		}
		ones, _ := n.Mask.Size()
		return ones == 0
	}
	if isDefault(a) || isDefault(b) {
		return isDefault(a) && isDefault(b)
	}
	return a.IP.Equal(b.IP) && a.Mask.String() == b.Mask.String()
}

func modeName(m netlink.IPVlanMode) string {
	for name, v := range netlinkModes {
		if v == m {
			return string(name)
		}
	}
	return fmt.Sprintf("%d", m)
}

func flagName(f netlink.IPVlanFlag) string {
	for name, v := range netlinkFlags {
		if v == f {
			return string(name)
		}
	}
	return fmt.Sprintf("%d", f)
}

func cmdStatus(args *skel.CmdArgs) error { return runVerb(args, status) }

// status reports whether ADD can succeed: the master exists (when it lives
// in the host namespace and is not taken from a previous plugin) and IPAM
// is ready.
func status(ctx context.Context, args *skel.CmdArgs, conf *NetConf) error {
	if !conf.LinkInContainer && (conf.Master != "" || conf.IPAM.Type != "") {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink handle: %w", err)
		}
		defer h.Close()
		if conf.Master != "" {
			if _, err := h.LinkByName(conf.Master); err != nil {
				return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("master %q not found: %v", conf.Master, err), "")
			}
		} else if _, err := defaultRouteLink(h); err != nil {
			return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("master is omitted and %v", err), "")
		}
	}
	if conf.IPAM.Type == "" {
		return nil
	}
	return ipam{args, conf}.status(ctx)
}

func cmdGC(args *skel.CmdArgs) error { return runVerb(args, gc) }

// gc has IPAM release the leases of attachments no longer valid. Links die
// with their namespaces: only IPAM's leases can outlive them.
func gc(ctx context.Context, args *skel.CmdArgs, conf *NetConf) error {
	if conf.IPAM.Type == "" {
		return nil
	}
	return ipam{args, conf}.gc(ctx)
}
