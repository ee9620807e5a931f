//go:build linux

package main

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/nldump"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

// What every verb shares: the container's namespace and netlink handles,
// the master's lookup, and the kernel's names for modes and flags.

var (
	netlinkModes = map[Mode]netlink.IPVlanMode{
		ModeL2: netlink.IPVLAN_MODE_L2, ModeL3: netlink.IPVLAN_MODE_L3, ModeL3S: netlink.IPVLAN_MODE_L3S,
	}
	netlinkFlags = map[Flag]netlink.IPVlanFlag{
		FlagBridge: netlink.IPVLAN_FLAG_BRIDGE, FlagPrivate: netlink.IPVLAN_FLAG_PRIVATE, FlagVEPA: netlink.IPVLAN_FLAG_VEPA,
	}
)

// session holds what a verb needs: the container's namespace and netlink
// handles bound to it and to the namespace the plugin was started in.
type session struct {
	args   *pluginmain.CmdArgs
	conf   *NetConf
	netns  ns.NetNS        // the container's
	cont   *netlink.Handle // bound to the container's namespace
	host   *netlink.Handle // bound to the plugin's own namespace
	master *netlink.Handle // host, or cont with linkInContainer
}

func openSession(args *pluginmain.CmdArgs, conf *NetConf) (*session, error) {
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
