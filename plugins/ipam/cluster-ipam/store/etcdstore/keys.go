package etcdstore

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The keys of one network, under <prefix><network>/:
//
//	blocks/<block CIDR>                           -> blockValue
//	nodes/<node>/blocks/<block CIDR>              -> claim time (RFC 3339)
//	ips/<address, sortable>                       -> ipValue
//	owners/<node>/<containerID>/<ifname>/<address> -> allocation time
//
// Addresses in ips/ keys sort as numbers: IPv4 as four zero-padded decimal
// octets (010.001.000.065), IPv6 fully expanded (fd00:0000:...:0041), so
// that the addresses of a block are one key range.

// addrKey returns the sortable form of a.
func addrKey(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%03d.%03d.%03d.%03d", b[0], b[1], b[2], b[3])
	}
	return a.StringExpanded()
}

// parseAddrKey reverses addrKey.
func parseAddrKey(s string) (netip.Addr, error) {
	if strings.Contains(s, ":") {
		return netip.ParseAddr(s)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, fmt.Errorf("address key %q is not four octets", s)
	}
	var b [4]byte
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("address key %q: %w", s, err)
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), nil
}

type keys struct{ base string } // <prefix><network>/

func (k keys) block(p netip.Prefix) string { return k.base + "blocks/" + p.String() }
func (k keys) blocks() string              { return k.base + "blocks/" }
func (k keys) nodeBlock(node string, p netip.Prefix) string {
	return k.nodeBlocks(node) + p.String()
}
func (k keys) nodeBlocks(node string) string { return k.base + "nodes/" + node + "/blocks/" }
func (k keys) ip(a netip.Addr) string        { return k.ips() + addrKey(a) }
func (k keys) ips() string                   { return k.base + "ips/" }
func (k keys) owners(node string) string     { return k.base + "owners/" + node + "/" }
func (k keys) owner(node string, o attachment) string {
	return k.owners(node) + o.ContainerID + "/" + o.IfName + "/"
}
func (k keys) ownerIP(node string, o attachment, a netip.Addr) string {
	return k.owner(node, o) + a.String()
}

// parseOwnerKey splits a key under owners(node) into its attachment and
// address.
func (k keys) parseOwnerKey(node, key string) (attachment, netip.Addr, error) {
	rest, ok := strings.CutPrefix(key, k.owners(node))
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 {
		return attachment{}, netip.Addr{}, fmt.Errorf("owner key %q is not <containerID>/<ifname>/<address>", key)
	}
	a, err := netip.ParseAddr(parts[2])
	if err != nil {
		return attachment{}, netip.Addr{}, fmt.Errorf("owner key %q: %w", key, err)
	}
	return attachment{ContainerID: parts[0], IfName: parts[1]}, a, nil
}
