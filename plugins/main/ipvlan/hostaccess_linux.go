//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/nldump"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

// hostAccess: the host namespace and the container reach each other.
//
// The kernel's ipvlan driver never hands a slave's frame to its master's
// own stack in the other direction: what the host sends through the master
// goes out on the wire. So the host gets a slave of its own on the master
// (the ipvlan "port": one mode and one flag for all its slaves), in the
// host namespace: the shim, named ipvh<index of the parent>, shared by
// every container of that parent with hostAccess. It has no address at
// all: an address on it would be registered by ipvlan as the shim's and
// take that address's traffic from the master, and its IPv6 link-local
// address would be the master's (the same MAC), so IPv6 address
// generation is off (ip link set ipvh<N> addrgenmode none) before it comes
// up. It is NOARP (ip link set ipvh<N> arp off, after up: the driver sets
// or clears NOARP by the port's mode when a slave opens): the kernel then
// resolves every neighbour through it to the device's own MAC, the
// master's, and the driver, seeing a frame addressed to its own MAC,
// delivers it to the slave that holds the destination address.
//
// For each container address the host gets a route through the shim,
// ip route add <address>/32 dev ipvh<N> src <parent's address> proto 201:
// the source is the parent's first global address of the family, the one
// the container can answer. Protocol 201 marks the plugin's routes.
//
// Container to host: in l2 the container resolves the host's address with
// ARP, which the driver never delivers to the master's own stack; so the
// container gets, for each global address of the parent in its families,
// ip route add <address>/32 dev eth0 and ip neigh add <address> lladdr
// <master's MAC> nud permanent dev eth0. The driver forwards such a frame,
// addressed to its own MAC and to no slave's address, to the master's
// stack. In l3 and l3s the container's link is NOARP and the driver routes
// a packet to an address of no slave in the host namespace: only the route
// is added, for a container whose routes do not cover the address.
//
// In l2 that packet arrives on the parent while the host's route back
// leads through the shim: strict reverse-path filtering (rp_filter 1)
// drops it, so ADD refuses hostAccess in l2 with IPv4 when the parent's
// effective rp_filter is 1 and says which sysctl to change.
//
// The attachments using a shim are recorded in a registry (registry_linux.go),
// with their addresses, under a lock per parent: ADD makes the shim if
// missing, DEL and GC remove an attachment's routes and, after the last
// one, the shim.

// hostRouteProtocol marks the host routes hostAccess adds (ip route ... proto 201).
const hostRouteProtocol netlink.RouteProtocol = 201

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE: no IPv6 link-local address.
const addrGenModeNone = 1

// shimName is the shim's name for a parent: ipvh<ifindex>.
func shimName(parent netlink.Link) string {
	return "ipvh" + strconv.Itoa(parent.Attrs().Index)
}

func hostAccessRegistry(parent netlink.Link) (*registry, error) {
	return lockRegistry(fmt.Sprintf("hostaccess-%d", parent.Attrs().Index))
}

// hostNet is the single-address network of ip: /32 or /128.
func hostNet(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}
}

// globalAddrs are the global addresses of link in the families asked for.
func globalAddrs(h *netlink.Handle, link netlink.Link, v4, v6 bool) ([]net.IP, error) {
	var out []net.IP
	for _, fam := range []struct {
		on     bool
		family int
	}{{v4, netlink.FAMILY_V4}, {v6, netlink.FAMILY_V6}} {
		if !fam.on {
			continue
		}
		addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(link, fam.family) })
		if err != nil {
			return nil, fmt.Errorf("ip addr show dev %s: %w", link.Attrs().Name, err)
		}
		for _, a := range addrs {
			if a.Scope == int(netlink.SCOPE_UNIVERSE) && !a.IP.IsLinkLocalUnicast() {
				out = append(out, a.IP)
			}
		}
	}
	return out, nil
}

// sourceFor is the first address of hostAddrs in ip's family, or nil.
func sourceFor(ip net.IP, hostAddrs []net.IP) net.IP {
	for _, a := range hostAddrs {
		if (a.To4() != nil) == (ip.To4() != nil) {
			return a
		}
	}
	return nil
}

// checkRPFilter refuses a parent whose effective rp_filter, the larger of
// net.ipv4.conf.all.rp_filter and net.ipv4.conf.<parent>.rp_filter, is 1.
func checkRPFilter(parent string) error {
	var eff int
	for _, dev := range []string{"all", parent} {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", dev, "rp_filter"))
		if err != nil {
			return fmt.Errorf("read rp_filter: %w", err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("read rp_filter of %s: %w", dev, err)
		}
		eff = max(eff, v)
	}
	if eff == 1 {
		return invalidConfig("hostAccess in mode l2 with IPv4 needs loose or no reverse-path filtering on %q: its effective rp_filter (the larger of net.ipv4.conf.all.rp_filter and net.ipv4.conf.%s.rp_filter) is 1, which drops the containers' packets to the host, since the host's routes to them lead through the host-side interface; set both to 2 (or 0)", parent, parent)
	}
	return nil
}

// setUpHostAccess is ADD's hostAccess step, taken when the container's
// link is up with its addresses: under the parent's lock, it records the
// attachment, makes the shim if missing and adds the host routes, then
// the container's routes (and in l2 its neighbours) to the host. It
// returns the undo step.
func (s *session) setUpHostAccess(parent, link netlink.Link, addrs *current.Result) (func(), error) {
	if !s.conf.HostAccess {
		return func() {}, nil
	}
	v4, v6 := families(addrs)
	if v4 && s.conf.Mode == ModeL2 {
		if err := checkRPFilter(parent.Attrs().Name); err != nil {
			return nil, err
		}
	}
	hostAddrs, err := globalAddrs(s.host, parent, v4, v6)
	if err != nil {
		return nil, err
	}
	me := attachmentOf(s.conf.Name, s.args.ContainerID, s.args.IfName)
	var ips []net.IP
	for _, ip := range addrs.IPs {
		ips = append(ips, ip.Address.IP)
		me.IPs = append(me.IPs, ip.Address.IP.String())
	}

	r, err := hostAccessRegistry(parent)
	if err != nil {
		return nil, err
	}
	defer r.unlock()
	if err := r.put(me); err != nil {
		return nil, err
	}
	if err := s.addHostRoutes(parent, ips, hostAddrs); err != nil {
		_ = s.dropHostAccess(r, parent, me)
		return nil, err
	}
	undo := func() {
		if r, err := hostAccessRegistry(parent); err == nil {
			_ = s.dropHostAccess(r, parent, me)
			r.unlock()
		}
	}
	// The container's side goes with its link: the undo step of the
	// link's creation removes it.
	for _, a := range hostAddrs {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: hostNet(a), Scope: netlink.SCOPE_LINK}
		if err := s.cont.RouteAdd(rt); err != nil && !errors.Is(err, unix.EEXIST) {
			undo()
			return nil, fmt.Errorf("ip route add %s dev %s: %w", rt.Dst, s.args.IfName, err)
		}
		if s.conf.Mode != ModeL2 {
			continue
		}
		n := &netlink.Neigh{
			LinkIndex: link.Attrs().Index, Family: ipFamily(a), State: netlink.NUD_PERMANENT,
			IP: a, HardwareAddr: parent.Attrs().HardwareAddr,
		}
		if err := s.cont.NeighSet(n); err != nil {
			undo()
			return nil, fmt.Errorf("ip neigh replace %s lladdr %s nud permanent dev %s: %w", a, n.HardwareAddr, s.args.IfName, err)
		}
	}
	return undo, nil
}

// addHostRoutes makes the shim if it is missing and adds a route to each
// of ips through it. The registry is locked.
func (s *session) addHostRoutes(parent netlink.Link, ips, hostAddrs []net.IP) error {
	shim, err := s.ensureShim(parent)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		rt := hostRoute(shim, ip, sourceFor(ip, hostAddrs))
		// replace: a route left by an attachment gone without DEL
		// (collected by GC) may lead to the address already.
		if err := s.host.RouteReplace(rt); err != nil {
			return fmt.Errorf("ip route replace %s dev %s src %v proto %d: %w", rt.Dst, shim.Attrs().Name, rt.Src, hostRouteProtocol, err)
		}
	}
	return nil
}

func hostRoute(shim netlink.Link, ip, src net.IP) *netlink.Route {
	rt := &netlink.Route{LinkIndex: shim.Attrs().Index, Dst: hostNet(ip), Src: src, Protocol: hostRouteProtocol}
	if ip.To4() != nil {
		rt.Scope = netlink.SCOPE_LINK
	}
	return rt
}

// ensureShim returns the parent's shim, making it if it is missing:
// ip link add link <parent> name ipvh<N> type ipvlan mode <mode> bridge;
// ip link set ipvh<N> addrgenmode none; ip link set ipvh<N> up arp off.
// A shim found down or with ARP on (someone set it down and up) is set
// right again.
func (s *session) ensureShim(parent netlink.Link) (netlink.Link, error) {
	name := shimName(parent)
	l, err := s.host.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil:
		if iv, ok := l.(*netlink.IPVlan); !ok || iv.Attrs().ParentIndex != parent.Attrs().Index {
			return nil, invalidConfig("hostAccess: the host interface %q is not an ipvlan link of %q, and the plugin names its host-side interface for %q so", name, parent.Attrs().Name, parent.Attrs().Name)
		}
	case errors.As(err, &nf):
		iv := &netlink.IPVlan{
			LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index},
			Mode:      netlinkModes[s.conf.Mode],
			Flag:      netlink.IPVLAN_FLAG_BRIDGE,
		}
		if err := s.host.LinkAdd(iv); err != nil {
			return nil, fmt.Errorf("ip link add link %s name %s type ipvlan mode %s bridge: %w", parent.Attrs().Name, name, s.conf.Mode, err)
		}
		if l, err = s.host.LinkByName(name); err != nil {
			return nil, fmt.Errorf("look up %s: %w", name, err)
		}
		if err := s.host.LinkSetIP6AddrGenMode(l, addrGenModeNone); err != nil {
			return nil, fmt.Errorf("ip link set %s addrgenmode none: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	if l.Attrs().RawFlags&unix.IFF_UP == 0 {
		if err := s.host.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("ip link set %s up: %w", name, err)
		}
	}
	if l.Attrs().RawFlags&unix.IFF_NOARP == 0 || l.Attrs().RawFlags&unix.IFF_UP == 0 {
		if err := s.host.LinkSetARPOff(l); err != nil {
			return nil, fmt.Errorf("ip link set %s arp off: %w", name, err)
		}
	}
	return l, nil
}

// dropHostAccess forgets the attachment me, deletes its host routes (those
// recorded and those of me.IPs) and, when it was the last, the shim. The
// registry r is locked.
func (s *session) dropHostAccess(r *registry, parent netlink.Link, me attachment) error {
	recorded, _, err := r.remove(me)
	if err != nil {
		return err
	}
	shim, err := s.host.LinkByName(shimName(parent))
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil // and the routes went with it
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", shimName(parent), err)
	}
	if err := s.deleteHostRoutes(shim, append(recorded.IPs, me.IPs...)); err != nil {
		return err
	}
	return s.deleteUnusedShim(r, shim)
}

// deleteHostRoutes deletes the plugin's routes to ips through the shim:
// ip route del <ip>/32 dev ipvh<N> proto 201.
func (s *session) deleteHostRoutes(shim netlink.Link, ips []string) error {
	for _, a := range ips {
		ip := net.ParseIP(a)
		if ip == nil {
			continue
		}
		rt := hostRoute(shim, ip, nil) // IPv4 matches the scope too
		if err := s.host.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("ip route del %s dev %s: %w", rt.Dst, shim.Attrs().Name, err)
		}
	}
	return nil
}

// deleteUnusedShim deletes the shim if the registry r, locked, lists no
// attachment: ip link del ipvh<N>. Its routes go with it.
func (s *session) deleteUnusedShim(r *registry, shim netlink.Link) error {
	left, err := r.list()
	if err != nil || len(left) > 0 {
		return err
	}
	if err := s.host.LinkDel(shim); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("ip link del %s: %w", shim.Attrs().Name, err)
	}
	return nil
}

// hostRoutesOf lists the plugin's routes through the shim.
func (s *session) hostRoutesOf(shim netlink.Link) ([]netlink.Route, error) {
	filter := &netlink.Route{LinkIndex: shim.Attrs().Index, Protocol: hostRouteProtocol, Table: unix.RT_TABLE_MAIN}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) {
		return s.host.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("ip route show dev %s proto %d: %w", shim.Attrs().Name, hostRouteProtocol, err)
	}
	return routes, nil
}

// gcHostAccess forgets the network's attachments on the parent that are
// not valid and deletes their routes, deletes the plugin's routes through
// the shim that lead to no recorded attachment's address, and deletes the
// shim when no attachment is left.
func (s *session) gcHostAccess(parent netlink.Link, valid map[string]bool) error {
	r, err := hostAccessRegistry(parent)
	if err != nil {
		return err
	}
	defer r.unlock()
	kept, err := r.collect(s.conf.Name, valid)
	if err != nil {
		return err
	}
	shim, err := s.host.LinkByName(shimName(parent))
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("look up %s: %w", shimName(parent), err)
	}
	leadsTo := map[string]bool{}
	for _, a := range kept {
		for _, ip := range a.IPs {
			leadsTo[net.ParseIP(ip).String()] = true
		}
	}
	if shim == nil {
		return nil
	}
	routes, err := s.hostRoutesOf(shim)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if rt.Dst != nil && !leadsTo[rt.Dst.IP.String()] {
			if err := s.host.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("ip route del %s dev %s: %w", rt.Dst, shim.Attrs().Name, err)
			}
		}
	}
	return s.deleteUnusedShim(r, shim)
}

// ourIPs are prevResult's addresses of the interface ifName in the sandbox.
func ourIPs(prev *current.Result, args *pluginmain.CmdArgs) []net.IP {
	if prev == nil {
		return nil
	}
	var out []net.IP
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(prev.Interfaces) {
			continue
		}
		if i := prev.Interfaces[*ip.Interface]; i.Name == args.IfName && i.Sandbox == args.Netns {
			out = append(out, ip.Address.IP)
		}
	}
	return out
}

// checkHostAccess is CHECK's hostAccess part: the shim is there, an up
// NOARP ipvlan link of the parent without addresses; each of the
// container's addresses has its host route through it; the container has
// its routes (and in l2 its neighbours) to the parent's addresses.
func (s *session) checkHostAccess(parent, link netlink.Link, prev *current.Result) error {
	name := shimName(parent)
	shim, err := s.host.LinkByName(name)
	if err != nil {
		return checkFailed("hostAccess: host interface %q not found: %v", name, err)
	}
	if iv, ok := shim.(*netlink.IPVlan); !ok || iv.Attrs().ParentIndex != parent.Attrs().Index {
		return checkFailed("hostAccess: host interface %q is not an ipvlan link of %q", name, parent.Attrs().Name)
	}
	if f := shim.Attrs().RawFlags; f&unix.IFF_UP == 0 || f&unix.IFF_NOARP == 0 {
		return checkFailed("hostAccess: host interface %q is not up with arp off", name)
	}
	if a, err := globalAddrs(s.host, shim, true, true); err != nil || len(a) > 0 {
		return checkFailed("hostAccess: host interface %q has addresses %v (%v), want none", name, a, err)
	}
	ips := ourIPs(prev, s.args)
	routes, err := s.hostRoutesOf(shim)
	if err != nil {
		return err
	}
	v4, v6 := false, false
	for _, ip := range ips {
		v4, v6 = v4 || ip.To4() != nil, v6 || ip.To4() == nil
		if !slices.ContainsFunc(routes, func(rt netlink.Route) bool { return rt.Dst != nil && rt.Dst.IP.Equal(ip) }) {
			return checkFailed("hostAccess: the host has no route to %s through %q (proto %d)", ip, name, hostRouteProtocol)
		}
	}
	hostAddrs, err := globalAddrs(s.host, parent, v4, v6)
	if err != nil {
		return err
	}
	ctrRoutes, err := nldump.Retry(func() ([]netlink.Route, error) {
		return s.cont.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return fmt.Errorf("ip route show dev %s: %w", s.args.IfName, err)
	}
	neighs, err := s.cont.NeighList(link.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("ip neigh show dev %s: %w", s.args.IfName, err)
	}
	for _, a := range hostAddrs {
		if !slices.ContainsFunc(ctrRoutes, func(rt netlink.Route) bool { return sameDst(rt.Dst, hostNet(a)) }) {
			return checkFailed("hostAccess: interface %q lacks the route to the host's %s", s.args.IfName, a)
		}
		if s.conf.Mode == ModeL2 && !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
			return n.IP.Equal(a) && n.State == netlink.NUD_PERMANENT && n.HardwareAddr.String() == parent.Attrs().HardwareAddr.String()
		}) {
			return checkFailed("hostAccess: interface %q lacks the permanent neighbour %s lladdr %s", s.args.IfName, a, parent.Attrs().HardwareAddr)
		}
	}
	return nil
}

// statusHostAccess reports the parent whose shim is missing while
// attachments with hostAccess use it.
func (s *session) statusHostAccess(parent netlink.Link) error {
	r, err := hostAccessRegistry(parent)
	if err != nil {
		return err
	}
	defer r.unlock()
	all, err := r.list()
	if err != nil || len(all) == 0 {
		return err
	}
	if _, err := s.host.LinkByName(shimName(parent)); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("hostAccess: %d attachments use %q and its host interface %q is missing: %v", len(all), parent.Attrs().Name, shimName(parent), err), "")
	}
	return nil
}

func ipFamily(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
