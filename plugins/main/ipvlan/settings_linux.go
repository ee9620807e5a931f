//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/devconf"
)

// settings are the interface's per-device kernel settings that ADD makes
// before the link comes up.
type settings struct {
	arpNotify   bool // the kernel sends a gratuitous ARP on up (net.ipv4.conf.<if>.arp_notify)
	ndiscNotify bool // the kernel sends an unsolicited neighbour advertisement on up (net.ipv6.conf.<if>.ndisc_notify)
	disableIPv6 bool // no IPv6 on the interface (net.ipv6.conf.<if>.disable_ipv6)
}

// planSettings says which settings an interface with addrs gets.
//
// arp_notify and ndisc_notify make the kernel announce the addresses when
// the link comes up: a gratuitous ARP per IPv4 address, an unsolicited
// neighbour advertisement (override set) per IPv6 one, from the master's
// MAC, which every slave shares. Peers holding a stale neighbour entry for
// a reused address learn the new place at once. In l3 and l3s the device
// has NOARP and the kernel sends no ARP, as it should.
//
// An interface given IPv4 addresses only gets IPv6 turned off
// (disable_ipv6), unless keepIPv6 is set: otherwise the kernel would give
// it a link-local address and run IPv6 autoconfiguration on it, and on a
// master with many slaves that traffic is multiplied by every slave.
func planSettings(addrs *current.Result, keepIPv6 bool) settings {
	v4, v6 := families(addrs)
	return settings{arpNotify: v4, ndiscNotify: v6, disableIPv6: v4 && !v6 && !keepIPv6}
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

// applySettings makes p's settings on link, inside the container's
// namespace (what /proc/sys shows depends on the namespace of the thread
// that opens it).
//
// arp_notify goes by netlink (package devconf), not through /proc/sys: the
// first lookup of /proc/sys/net/ipv4 in a new namespace costs milliseconds
// on a host with thousands of containers. The kernel has no netlink form of
// IPv6's per-device settings: those are written to
// /proc/sys/net/ipv6/conf/<if>/.
func (s *session) applySettings(link netlink.Link, p settings) error {
	if p == (settings{}) {
		return nil
	}
	return s.netns.Do(func(ns.NetNS) error {
		if p.arpNotify {
			if err := devconf.SetIPv4(link.Attrs().Index, devconf.ARPNotify, 1); err != nil {
				return fmt.Errorf("set arp_notify on %s: %w", s.args.IfName, err)
			}
		}
		if p.ndiscNotify {
			if err := writeSysctl(filepath.Join("/proc/sys/net/ipv6/conf", s.args.IfName, "ndisc_notify"), "1"); err != nil {
				return err
			}
		}
		if p.disableIPv6 {
			// An interface the kernel gave no IPv6 at all has no
			// disable_ipv6: a kernel without IPv6 (ipv6.disable=1), or an
			// MTU below IPv6's minimum of 1280; there is nothing to turn off.
			err := writeSysctl(filepath.Join("/proc/sys/net/ipv6/conf", s.args.IfName, "disable_ipv6"), "1")
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}
