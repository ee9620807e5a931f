//go:build linux

package garp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestPacket(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	got := Packet(mac, net.ParseIP("10.1.2.3"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths 6 and 4, request
		0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 1, 2, 3, // sender: the MAC and the address
		0, 0, 0, 0, 0, 0, 10, 1, 2, 3, // target: no MAC, the same address
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Packet = % x\nwant             % x", got, want)
	}
	// In memory, as the kernel reads it: the most significant byte first.
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], htons(0x0806))
	if b != [2]byte{0x08, 0x06} {
		t.Errorf("htons(0x0806) is % x in memory, want 08 06", b)
	}
}

// CloseWhileBlocked closes the socket whether it sees the thread blocked,
// is told to stop, or cannot read the thread's state.
func TestCloseWhileBlocked(t *testing.T) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	lo.Attrs().HardwareAddr = net.HardwareAddr{0x02, 0, 0, 0, 0, 1} // lo has no Ethernet address
	stopped := make(chan struct{})
	close(stopped)
	for name, tc := range map[string]struct {
		tid  int
		stop chan struct{}
	}{
		"stop closed":    {tid: unix.Gettid(), stop: stopped},
		"no such thread": {tid: 1 << 30, stop: make(chan struct{})},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(lo)
			if errors.Is(err, unix.EPERM) {
				t.Skip("a packet socket needs CAP_NET_RAW")
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CloseWhileBlocked(tc.tid, tc.stop); err != nil {
				t.Fatalf("CloseWhileBlocked: %v", err)
			}
			if _, err := unix.FcntlInt(uintptr(s.fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
				t.Errorf("fcntl(F_GETFD) on the socket after CloseWhileBlocked: %v, want EBADF", err)
			}
		})
	}
}
