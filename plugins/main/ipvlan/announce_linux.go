package main

import (
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/garp"
)

// announceIPv4 tells the master's segment that the container's IPv4
// addresses are here: one gratuitous ARP request per address, sent out of
// the master itself from its MAC, which every slave shares. Peers holding a
// stale neighbour entry for a reused address (one that lived behind another
// MAC) update it at once.
//
// The kernel's arp_notify would send the same frame through the slave, and
// in l2 mode the ipvlan driver hands a slave's broadcast to every other
// slave of the master as well: one ARP to process in each container's
// namespace, thousands on a busy master, for nothing, since a slave's
// neighbours on the same master already know it by the same MAC. Sent from
// the master, the frame reaches the segment only.
//
// Only l2 announces: in l3 and l3s the slave has NOARP and peers are set up
// by hand. A master that is down has no one to tell. The frames go out
// with the master's MAC as sender, which is the slave's MAC too.
func (s *session) announceIPv4(master netlink.Link, addrs *current.Result) error {
	if s.conf.Mode != ModeL2 {
		return nil
	}
	var ips []net.IP
	for _, ip := range addrs.IPs {
		if v4 := ip.Address.IP.To4(); v4 != nil {
			ips = append(ips, v4)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	send := func() error { return garp.Send(master, ips) }
	if s.conf.LinkInContainer {
		return s.netns.Do(func(ns.NetNS) error { return send() })
	}
	return send()
}
