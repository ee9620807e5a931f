//go:build linux

package garp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Send sends, out of link, an ARP request for each IPv4 address with the
// address as both sender and target, from link's MAC to the broadcast
// address. It needs CAP_NET_RAW in link's network namespace, and the
// calling thread must be in that namespace. A link that is down has no one
// to tell: Send then does nothing.
func Send(link netlink.Link, ips []net.IP) error {
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("announce on %q: its hardware address %q is not Ethernet", link.Attrs().Name, mac)
	}
	// Protocol 0: the socket only sends, and receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("announce on %q: packet socket: %w", link.Attrs().Name, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{
		Protocol: htons(unix.ETH_P_ARP),
		Ifindex:  link.Attrs().Index,
		Halen:    6,
		Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for _, ip := range ips {
		if err := unix.Sendto(fd, Packet(mac, ip), 0, to); err != nil {
			if errors.Is(err, unix.ENETDOWN) {
				return nil
			}
			return fmt.Errorf("announce %s on %q (gratuitous ARP): %w", ip, link.Attrs().Name, err)
		}
	}
	return nil
}

// Packet is the ARP payload (RFC 826, RFC 5227 section 3) of an
// announcement of the IPv4 address ip at mac: a request whose sender and
// target protocol addresses are both ip, with an all-zero target hardware
// address.
func Packet(mac net.HardwareAddr, ip net.IP) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // hardware type: Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // protocol type: IPv4
	b[4], b[5] = 6, 4                         // address lengths
	binary.BigEndian.PutUint16(b[6:], 1)      // operation: request
	copy(b[8:14], mac)
	copy(b[14:18], ip.To4())
	// b[18:24], the target hardware address, stays zero.
	copy(b[24:28], ip.To4())
	return b
}

// htons puts v in network byte order, as socket addresses want it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
