//go:build linux

package main

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/nldump"
)

// With vlan set, the ipvlan link's parent is the master's 802.1Q
// sub-interface of that VLAN ID: one that exists is used as it is, whatever
// its name; otherwise ADD makes <master>.<vlan> and marks it as the
// plugin's own with an interface alias (ip link set ... alias ipvlan-cni),
// and the last attachment to go (DEL, or GC) deletes it. One the plugin did
// not make is never deleted. The attachments on a VLAN the plugin made are
// recorded in a registry (registry_linux.go) whose lock serializes the
// decisions to make and delete it.

// vlanAlias marks a VLAN sub-interface the plugin made.
const vlanAlias = "ipvlan-cni"

// vlanName is the name ADD gives a VLAN sub-interface it makes:
// <master>.<vlan>, or, when that is longer than the kernel's 15
// characters, v<8 hex digits>.<vlan>, the digits being the FNV-1a hash of
// the master's name (v6f1c2a3b.100).
func vlanName(master string, vid int) string {
	name := master + "." + strconv.Itoa(vid)
	if len(name) <= 15 {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(master))
	return fmt.Sprintf("v%08x.%d", h.Sum32(), vid)
}

func vlanRegistry(master netlink.Link, vid int) (*registry, error) {
	return lockRegistry(fmt.Sprintf("vlan-%d.%d", master.Attrs().Index, vid))
}

// isVLANOf reports whether l is the 802.1Q sub-interface vid of master.
func isVLANOf(l netlink.Link, master netlink.Link, vid int) bool {
	v, ok := l.(*netlink.Vlan)
	return ok && v.Attrs().ParentIndex == master.Attrs().Index && v.VlanId == vid &&
		(v.VlanProtocol == netlink.VLAN_PROTOCOL_8021Q || v.VlanProtocol == netlink.VLAN_PROTOCOL_UNKNOWN)
}

// findVLAN looks for the sub-interface vid of master in the namespace of h:
// under the name ADD gives it first, else among all links. It returns nil
// when there is none.
func findVLAN(h *netlink.Handle, master netlink.Link, vid int) (netlink.Link, error) {
	if l, err := h.LinkByName(vlanName(master.Attrs().Name, vid)); err == nil && isVLANOf(l, master, vid) {
		return l, nil
	}
	links, err := nldump.Retry(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("ip link show: %w", err)
	}
	for _, l := range links {
		if isVLANOf(l, master, vid) {
			return l, nil
		}
	}
	return nil, nil
}

// vlanParent is ADD's vlan step: it returns the ipvlan link's parent, the
// master itself when vlan is unset, and an undo step. Under the VLAN's
// lock it finds or makes the sub-interface and records the attachment, so
// that no concurrent DEL deletes it before the ipvlan link is on it:
// ip link add link <master> name <master>.<vlan> mtu <master's> type vlan id <vlan>;
// ip link set <master>.<vlan> alias ipvlan-cni up.
func (s *session) vlanParent(master netlink.Link) (netlink.Link, func(), error) {
	vid := s.conf.VLAN
	if vid == 0 {
		return master, func() {}, nil
	}
	r, err := vlanRegistry(master, vid)
	if err != nil {
		return nil, nil, err
	}
	defer r.unlock()
	me := attachmentOf(s.conf.Name, s.args.ContainerID, s.args.IfName)
	if err := r.put(me); err != nil {
		return nil, nil, err
	}
	undo := func() { s.releaseVLAN(master, vid) }
	parent, err := findVLAN(s.host, master, vid)
	if err != nil || parent != nil {
		if err != nil {
			_, _, _ = r.remove(me)
		}
		return parent, undo, err
	}
	name := vlanName(master.Attrs().Name, vid)
	v := &netlink.Vlan{
		LinkAttrs: netlink.LinkAttrs{
			Name: name, ParentIndex: master.Attrs().Index, MTU: master.Attrs().MTU,
		},
		VlanId:       vid,
		VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
	}
	if err := s.host.LinkAdd(v); err != nil {
		_, _, _ = r.remove(me)
		if errors.Is(err, unix.EEXIST) {
			return nil, nil, invalidConfig("vlan %d: master %q has no VLAN %d sub-interface, and the name %q for one is taken by another link", vid, master.Attrs().Name, vid, name)
		}
		return nil, nil, fmt.Errorf("ip link add link %s name %s type vlan id %d: %w", master.Attrs().Name, name, vid, err)
	}
	// The kernel takes no alias with the link's creation. A plugin killed
	// before this leaves a sub-interface without the mark: it is kept.
	parent, err = s.host.LinkByName(name)
	if err == nil {
		err = s.host.LinkSetAlias(parent, vlanAlias)
	}
	if err == nil {
		err = s.host.LinkSetUp(parent)
	}
	if err != nil {
		_ = s.host.LinkDel(v)
		_, _, _ = r.remove(me)
		return nil, nil, fmt.Errorf("ip link set %s alias %s up: %w", name, vlanAlias, err)
	}
	return parent, undo, nil
}

// releaseVLAN forgets the attachment on the master's VLAN vid and, if it
// was the last and the plugin made the sub-interface, deletes it:
// ip link del <master>.<vlan>. What DEL and a failed ADD do.
func (s *session) releaseVLAN(master netlink.Link, vid int) error {
	r, err := vlanRegistry(master, vid)
	if err != nil {
		return err
	}
	defer r.unlock()
	if _, _, err := r.remove(attachmentOf(s.conf.Name, s.args.ContainerID, s.args.IfName)); err != nil {
		return err
	}
	return s.deleteUnusedVLAN(r, master, vid)
}

// deleteUnusedVLAN deletes the master's VLAN vid if the plugin made it and
// the registry r, locked, lists no attachment on it.
func (s *session) deleteUnusedVLAN(r *registry, master netlink.Link, vid int) error {
	left, err := r.list()
	if err != nil || len(left) > 0 {
		return err
	}
	v, err := findVLAN(s.host, master, vid)
	if err != nil || v == nil || v.Attrs().Alias != vlanAlias {
		return err
	}
	if err := s.host.LinkDel(v); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("ip link del %s: %w", v.Attrs().Name, err)
	}
	return nil
}

// gcVLAN forgets the network's attachments on the master's VLAN that are
// not valid, then deletes the sub-interface if it is the plugin's and
// unused.
func (s *session) gcVLAN(master netlink.Link, valid map[string]bool) error {
	r, err := vlanRegistry(master, s.conf.VLAN)
	if err != nil {
		return err
	}
	defer r.unlock()
	if _, err := r.collect(s.conf.Name, valid); err != nil {
		return err
	}
	return s.deleteUnusedVLAN(r, master, s.conf.VLAN)
}

// checkVLAN is CHECK's view of the parent: the master's sub-interface of
// the configured VLAN ID, which the container's link must sit on.
func (s *session) checkVLAN(master netlink.Link) (netlink.Link, error) {
	v, err := findVLAN(s.host, master, s.conf.VLAN)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, checkFailed("master %q has no sub-interface of vlan %d", master.Attrs().Name, s.conf.VLAN)
	}
	return v, nil
}
