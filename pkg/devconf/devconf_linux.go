//go:build linux

package devconf

import (
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Key is an IPV4_DEVCONF_* attribute of the kernel's include/uapi/linux/ip.h.
type Key int

// ARPNotify is arp_notify: the kernel sends a gratuitous ARP for each of
// the link's addresses when it comes up or changes its hardware address.
const ARPNotify Key = 22

// SetIPv4 sets key to value on the link with index in the calling
// thread's network namespace. It needs CAP_NET_ADMIN there.
func SetIPv4(index int, key Key, value uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	conf := spec.AddRtAttr(unix.AF_INET, nil).AddRtAttr(unix.IFLA_INET_CONF, nil)
	conf.AddRtAttr(int(key), nl.Uint32Attr(value))
	req.AddData(spec)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("set IPv4 device configuration %d=%d on link %d: %w", key, value, index, err)
	}
	return nil
}
