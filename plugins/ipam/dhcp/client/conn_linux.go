package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a packet socket (AF_PACKET, SOCK_DGRAM, IPv4) on one interface
// of the calling thread's network namespace: what a DHCP client needs
// before it holds an address, like `dhclient` or `udhcpc` on that
// interface. It receives every IPv4 packet the interface receives, its
// own traffic excluded; Receive keeps the DHCP replies.
type Conn struct {
	ifindex int
	mac     net.HardwareAddr
	f       *os.File
	// buf receives one packet at a time (Receive is not concurrent).
	buf []byte
}

// clientPortFilter is a classic BPF program that keeps, of the IPv4
// packets the socket sees, the unfragmented UDP datagrams to port 68, so
// the kernel drops the rest (the requests going out of the interface
// among them) before they wake the reader: a daemon renewing many leases
// has a socket open per exchange, and each would see every other's
// traffic.
var clientPortFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},                       // protocol
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 6, K: protoUDP}, //
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 6},                       // flags, fragment offset
	{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: 4, Jf: 0, K: 0x3fff},  // MF or an offset: drop
	{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},                      // X = IPv4 header length
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 2},                       // UDP destination port
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: ClientPort},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Open opens a Conn on the interface called name. It needs CAP_NET_RAW.
func Open(name string) (*Conn, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up interface %q: %w", name, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	if err != nil {
		return nil, fmt.Errorf("open a packet socket on %q: %w", name, err)
	}
	prog := unix.SockFprog{Len: uint16(len(clientPortFilter)), Filter: &clientPortFilter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("filter a packet socket on %q: %w", name, err)
	}
	// Bound after the filter is attached: no packet gets in unfiltered.
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind a packet socket to %q: %w", name, err)
	}
	return &Conn{ifindex: ifi.Index, mac: ifi.HardwareAddr, f: os.NewFile(uintptr(fd), "dhcp:"+name), buf: make([]byte, 1<<16)}, nil
}

// HardwareAddr is the interface's MAC address.
func (c *Conn) HardwareAddr() net.HardwareAddr { return c.mac }

// Close closes the socket.
func (c *Conn) Close() error { return c.f.Close() }

// Send sends payload in a UDP datagram from src:68 to dst:67, in a frame
// to dstMAC (nil for the broadcast address).
func (c *Conn) Send(payload []byte, src, dst netip.Addr, dstMAC net.HardwareAddr) error {
	if dstMAC == nil {
		dstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: c.ifindex, Halen: uint8(len(dstMAC))}
	copy(to.Addr[:], dstMAC)
	pkt := encodeUDP4(payload, src, dst)
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), pkt, 0, to)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

// Receive returns the payload of the next UDP datagram to port 68 and the
// MAC address of its sender, waiting until ctx is done.
func (c *Conn) Receive(ctx context.Context) ([]byte, net.HardwareAddr, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Time{}
	}
	if err := c.f.SetReadDeadline(deadline); err != nil {
		return nil, nil, err
	}
	// A cancel interrupts the read too, but only this call's read: once
	// Receive returns, a late run of the function does nothing.
	var (
		mu     sync.Mutex
		active = true
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if active {
			_ = c.f.SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer func() {
		if !stop() {
			mu.Lock()
			active = false
			mu.Unlock()
		}
	}()
	rc, err := c.f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	buf := c.buf
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil, context.DeadlineExceeded
			}
			return nil, nil, err
		}
		if rerr != nil {
			return nil, nil, rerr
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		payload, _, err := decodeUDP4(buf[:n])
		if err != nil {
			continue
		}
		mac := make(net.HardwareAddr, ll.Halen)
		copy(mac, ll.Addr[:ll.Halen])
		return append([]byte(nil), payload...), mac, nil
	}
}
