package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// resolveMaster returns name, or when it is empty the interface of the
// daemon namespace's IPv4 default route (as the ipvlan plugin picks its
// master).
func resolveMaster(name string) (string, error) {
	if name != "" {
		if _, err := netlink.LinkByName(name); err != nil {
			return "", types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("master %q: %v", name, err), "")
		}
		return name, nil
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("ip route show: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil && r.LinkIndex > 0 {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("look up default route interface %d: %w", r.LinkIndex, err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", types.NewError(types.ErrInvalidNetworkConfig, "no master given and the dhcp daemon's namespace has no default route to take it from", "")
}

// namespaceExists tells whether path is still a network namespace.
func namespaceExists(path string) bool {
	if path == "" {
		return true // the caller gave none: nothing to watch
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC || st.Type == unix.PROC_SUPER_MAGIC
}

// linkAt looks up ifname in the namespace at path, through a netlink
// handle bound to it (route only: the other families, xfrm and so on, may
// be unloaded modules). The caller closes the handle.
func linkAt(path, ifname string) (*netlink.Handle, netlink.Link, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("interface %q in %s: %w", ifname, path, err)
	}
	return h, l, nil
}

// removeAddress is `ip -n NS addr del ADDR dev IFNAME`; a missing
// namespace, link or address is no error.
func removeAddress(path, ifname string, addr netip.Prefix) error {
	if path == "" || !namespaceExists(path) {
		return nil
	}
	h, l, err := linkAt(path, ifname)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	defer h.Close()
	a, _ := netlink.ParseAddr(addr.String())
	if err := h.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ip addr del %s dev %s in %s: %w", addr, ifname, path, err)
	}
	return nil
}

// holdsAddress checks that ifname in the namespace at path has addr.
func holdsAddress(path, ifname string, addr netip.Prefix) error {
	h, l, err := linkAt(path, ifname)
	if err != nil {
		return err
	}
	defer h.Close()
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("ip addr show %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if p, ok := netip.AddrFromSlice(a.IP.To4()); ok && p == addr.Addr() {
			return nil
		}
	}
	return fmt.Errorf("interface %q in %s does not hold its lease %s", ifname, path, addr)
}
