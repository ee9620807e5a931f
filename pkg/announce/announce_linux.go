//go:build linux

package announce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Sender sends announcements out of one link through a packet socket.
//
// Closing it costs an RCU grace period: the kernel's packet_release waits
// for one (synchronize_net), a normal one unless some thread holds rtnl at
// that moment, when it is an expedited one. Under emulation that is ~15 ms
// against well under one.
type Sender struct {
	fd    int
	link  string
	index int
	mac   net.HardwareAddr
}

var (
	broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes  = net.ParseIP("ff02::1")
	// allNodesMAC is ff02::1's Ethernet multicast address (RFC 2464).
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// Open opens a sender on link. It needs CAP_NET_RAW in link's network
// namespace, and the calling thread must be in that namespace.
func Open(link netlink.Link) (*Sender, error) {
	a := link.Attrs()
	if len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce on %q: its hardware address %q is not Ethernet", a.Name, a.HardwareAddr)
	}
	// Protocol 0: the socket only sends, and receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("announce on %q: packet socket: %w", a.Name, err)
	}
	return &Sender{fd: fd, link: a.Name, index: a.Index, mac: a.HardwareAddr}, nil
}

// Announce sends, from the link's MAC, a gratuitous ARP for each IPv4
// address and an unsolicited neighbour advertisement for each IPv6 one. A
// link that is down has no one to tell: Announce then does nothing.
func (s *Sender) Announce(ips []net.IP) error {
	for _, ip := range ips {
		var (
			frame []byte
			to    = unix.SockaddrLinklayer{Ifindex: s.index, Halen: 6}
			what  string
		)
		if v4 := ip.To4(); v4 != nil {
			frame, what = ARP(s.mac, v4), "gratuitous ARP"
			to.Protocol = htons(unix.ETH_P_ARP)
			copy(to.Addr[:], broadcast)
		} else {
			frame, what = NA(s.mac, ip), "unsolicited neighbour advertisement"
			to.Protocol = htons(unix.ETH_P_IPV6)
			copy(to.Addr[:], allNodesMAC)
		}
		if err := unix.Sendto(s.fd, frame, 0, &to); err != nil {
			if errors.Is(err, unix.ENETDOWN) {
				return nil
			}
			return fmt.Errorf("announce %s on %q (%s): %w", ip, s.link, what, err)
		}
	}
	return nil
}

// Close closes the packet socket (see Sender on its cost).
func (s *Sender) Close() error {
	return unix.Close(s.fd)
}

// CloseWhileBlocked closes the socket once thread tid of this process
// sleeps uninterruptibly (state D), as a thread does while the kernel holds
// rtnl for it (a rename waiting for its grace period, say), or at once when
// stop is closed: the close then waits for an expedited grace period, not a
// normal one.
func (s *Sender) CloseWhileBlocked(tid int, stop <-chan struct{}) error {
	stat := "/proc/self/task/" + strconv.Itoa(tid) + "/stat"
wait:
	for {
		select {
		case <-stop:
			break wait
		default:
		}
		b, err := os.ReadFile(stat)
		if err != nil {
			break
		}
		// "tid (comm) state ...": comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'D' {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	return s.Close()
}

// ARP is the ARP payload (RFC 826, RFC 5227 section 3) of an announcement
// of the IPv4 address ip at mac: a request whose sender and target protocol
// addresses are both ip, with an all-zero target hardware address.
func ARP(mac net.HardwareAddr, ip net.IP) []byte {
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

// NA is the IPv6 packet (header and ICMPv6 message) of an unsolicited
// neighbour advertisement of the IPv6 address ip at mac (RFC 4861 sections
// 4.4 and 7.2.6): from ip to all nodes, hop limit 255, the override flag
// set and solicited clear, with ip as the target and mac as its target
// link-layer address option.
func NA(mac net.HardwareAddr, ip net.IP) []byte {
	const hdr, msg = 40, 32 // the IPv6 header; the advertisement with one 8-byte option
	b := make([]byte, hdr+msg)
	b[0] = 6 << 4                                  // version 6, traffic class and flow label 0
	binary.BigEndian.PutUint16(b[4:], uint16(msg)) // payload length
	b[6] = unix.IPPROTO_ICMPV6                     // next header
	b[7] = 255                                     // hop limit: receivers drop anything else
	copy(b[8:24], ip.To16())
	copy(b[24:40], allNodes)
	m := b[hdr:]
	m[0] = 136    // type: neighbour advertisement
	m[4] = 1 << 5 // flags: override (router and solicited clear)
	copy(m[8:24], ip.To16())
	m[24], m[25] = 2, 1 // option: target link-layer address, 8 bytes
	copy(m[26:32], mac)
	binary.BigEndian.PutUint16(m[2:], icmpv6Checksum(b[8:24], b[24:40], m))
	return b
}

// icmpv6Checksum is the Internet checksum of an ICMPv6 message and its
// pseudo-header (RFC 8200 section 8.1), with the checksum field zero.
func icmpv6Checksum(src, dst, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	var pseudo [8]byte
	binary.BigEndian.PutUint32(pseudo[0:], uint32(len(msg)))
	pseudo[7] = unix.IPPROTO_ICMPV6
	add(pseudo[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// htons puts v in network byte order, as socket addresses want it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
