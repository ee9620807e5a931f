//go:build linux

package garp

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
	fd   int
	link string
	mac  net.HardwareAddr
	to   unix.SockaddrLinklayer
}

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
	return &Sender{
		fd:   fd,
		link: a.Name,
		mac:  a.HardwareAddr,
		to: unix.SockaddrLinklayer{
			Protocol: htons(unix.ETH_P_ARP),
			Ifindex:  a.Index,
			Halen:    6,
			Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		},
	}, nil
}

// Announce sends, from the link's MAC to the broadcast address, an ARP
// request for each IPv4 address with the address as both sender and
// target. A link that is down has no one to tell: Announce then does
// nothing.
func (s *Sender) Announce(ips []net.IP) error {
	for _, ip := range ips {
		if err := unix.Sendto(s.fd, Packet(s.mac, ip), 0, &s.to); err != nil {
			if errors.Is(err, unix.ENETDOWN) {
				return nil
			}
			return fmt.Errorf("announce %s on %q (gratuitous ARP): %w", ip, s.link, err)
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
