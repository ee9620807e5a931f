//go:build linux

package main

import (
	"context"
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/nldump"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

func cmdCheck(args *pluginmain.CmdArgs) error { return runVerb(args, check) }

// check compares the container's interface with the configuration and
// prevResult, and asks IPAM to check its lease.
func check(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf) error {
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
func checkLink(args *pluginmain.CmdArgs, conf *NetConf, prev *current.Result) error {
	s, err := openSession(args, conf)
	if err != nil {
		return err
	}
	defer s.close()
	master, err := s.resolveMaster()
	if err != nil {
		return err
	}
	if conf.VLAN != 0 {
		// The link's parent is the master's sub-interface of the VLAN.
		if master, err = s.checkVLAN(master); err != nil {
			return err
		}
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
	if err := checkPrevResult(s.cont, iv, args, prev); err != nil {
		return err
	}
	if conf.HostAccess {
		return s.checkHostAccess(master, iv, prev)
	}
	return nil
}

// checkPrevResult finds our interface in prevResult and checks that its
// addresses and the routes are on the link.
func checkPrevResult(h *netlink.Handle, link netlink.Link, args *pluginmain.CmdArgs, prev *current.Result) error {
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
