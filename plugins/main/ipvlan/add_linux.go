//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/resultjson"
)

// verbTimeout bounds one invocation, IPAM included.
const verbTimeout = 2 * time.Minute

// addStep names the steps of ADD, in order, for tests that make one fail.
type addStep string

const (
	stepVLAN       addStep = "vlan"       // the VLAN sub-interface, found or made (vlan_linux.go)
	stepCreate     addStep = "create"     // ip link add ... name CNI_IFNAME netns CNI_NETNS
	stepIPAM       addStep = "ipam"       // IPAM ADD (or prevResult's addresses)
	stepSettings   addStep = "settings"   // arp_notify, ndisc_notify, disable_ipv6
	stepAddress    addStep = "address"    // ip addr add
	stepUp         addStep = "up"         // ip link set up
	stepRoute      addStep = "route"      // ip route add
	stepHostAccess addStep = "hostaccess" // the shim and the routes between host and container (hostaccess_linux.go)
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

// runVerb parses the configuration and runs verb under verbTimeout: what
// every verb does first.
func runVerb(args *pluginmain.CmdArgs, verb func(context.Context, *pluginmain.CmdArgs, *NetConf) error) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	return verb(ctx, args, conf)
}

func cmdAdd(args *pluginmain.CmdArgs) error {
	return runVerb(args, func(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf) error {
		_, out, err := add(ctx, args, conf, nil)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	})
}

// add creates the container's ipvlan interface and configures it, step by
// step in the order the kernel sees them, and returns the result and the
// result encoded in the configuration's cniVersion. On any error every
// step already taken is undone, newest first, and each undo step undoes
// only what its own step did: the lease is released only if this ADD got
// it. The error returned is the first that occurred.
func add(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf, fail failpoint) (_ *current.Result, _ []byte, err error) {
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

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	// With vlan, the parent is the master's VLAN sub-interface.
	parent, undoVLAN, err := s.vlanParent(master)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, undoVLAN)
	if err := fail.after(stepVLAN); err != nil {
		return nil, nil, err
	}
	if parent.Attrs().Index != master.Attrs().Index && conf.MTU > parent.Attrs().MTU {
		return nil, nil, invalidConfig("invalid mtu %d: above the MTU %d of %q, the VLAN %d sub-interface of master %q", conf.MTU, parent.Attrs().MTU, parent.Attrs().Name, conf.VLAN, master.Attrs().Name)
	}

	link, err := s.createLink(parent)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { _ = s.cont.LinkDel(link) })
	if err := fail.after(stepCreate); err != nil {
		return nil, nil, err
	}

	addrs, release, err := s.addresses(ctx)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, release)
	if err := fail.after(stepIPAM); err != nil {
		return nil, nil, err
	}

	if err := s.applySettings(link, planSettings(addrs, conf.KeepIPv6)); err != nil {
		return nil, nil, err
	}
	if err := fail.after(stepSettings); err != nil {
		return nil, nil, err
	}

	if err := s.addAddresses(link, addrs); err != nil {
		return nil, nil, err
	}
	if err := fail.after(stepAddress); err != nil {
		return nil, nil, err
	}

	// The kernel announces the addresses now (see planSettings).
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

	undoHostAccess, err := s.setUpHostAccess(parent, link, addrs)
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, undoHostAccess)
	if err := fail.after(stepHostAccess); err != nil {
		return nil, nil, err
	}
	return s.result(link.Attrs().HardwareAddr, addrs)
}

// createLink adds the ipvlan link to the container's namespace under its
// final name, in one request:
// ip link add link <master> name <ifname> netns <container> type ipvlan mode <mode> <flag>.
// With linkInContainer the master is in the container's namespace already.
// A name already taken is refused by the kernel (EEXIST), and that link is
// left as it is. A plugin killed after this request leaves at most
// CNI_IFNAME behind, which the runtime's DEL removes.
func (s *session) createLink(master netlink.Link) (netlink.Link, error) {
	name := s.args.IfName
	attrs := netlink.LinkAttrs{Name: name, ParentIndex: master.Attrs().Index, MTU: s.conf.MTU}
	if !s.conf.LinkInContainer {
		attrs.Namespace = netlink.NsFd(int(s.netns.Fd()))
	}
	iv := &netlink.IPVlan{LinkAttrs: attrs, Mode: netlinkModes[s.conf.Mode], Flag: netlinkFlags[s.conf.Flag]}
	if err := s.master.LinkAdd(iv); err != nil {
		switch {
		case errors.Is(err, unix.EEXIST):
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables,
				fmt.Sprintf("CNI_IFNAME %q: a link of that name already exists in %s", name, s.args.Netns), "")
		case errors.Is(err, unix.EBUSY):
			if mv := s.macvlanOn(master); mv != "" {
				return nil, invalidConfig("master %q already carries macvlan link %q: the kernel does not mix macvlan and ipvlan on one master", master.Attrs().Name, mv)
			}
		}
		return nil, fmt.Errorf("ip link add link %s name %s type ipvlan mode %s %s: %w", master.Attrs().Name, name, s.conf.Mode, s.conf.Flag, err)
	}
	link, err := s.cont.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up new link %s in %s: %w", name, s.args.Netns, err)
	}
	return link, nil
}

// addresses gets the interface's addresses, from IPAM or from prevResult,
// and an undo step that releases what it leased. IPAM is asked to release
// only once its ADD has succeeded: an ADD that failed leased nothing, and a
// DEL then could free a lease the attachment held before this ADD (an ADD
// retried, or refused because the attachment holds one already).
func (s *session) addresses(ctx context.Context) (*current.Result, func(), error) {
	if s.conf.IPAM.Type == "" {
		prev := s.conf.prev()
		return &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: prev.IPs, Routes: prev.Routes, DNS: prev.DNS}, func() {}, nil
	}
	i := ipam{s.args, s.conf}
	res, err := i.add(ctx)
	if err != nil {
		return nil, nil, err
	}
	release := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = i.del(ctx)
	}
	return res, release, nil
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

// result builds ADD's result, listing prevResult's interfaces followed by
// ours, with every address pointing at ours, and encodes it in the
// configuration's cniVersion.
func (s *session) result(mac net.HardwareAddr, addrs *current.Result) (*current.Result, []byte, error) {
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
	out, err := resultjson.Encode(res, s.conf.CNIVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("convert the result to version %s: %w", s.conf.CNIVersion, err)
	}
	return res, out, nil
}
