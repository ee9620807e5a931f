//go:build linux

package announce

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestARP(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	got := ARP(mac, net.ParseIP("10.1.2.3"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths 6 and 4, request
		0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 1, 2, 3, // sender: the MAC and the address
		0, 0, 0, 0, 0, 0, 10, 1, 2, 3, // target: no MAC, the same address
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ARP = % x\nwant          % x", got, want)
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

func TestNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	ip := net.ParseIP("fd00:10::7")
	b := NA(mac, ip)
	if len(b) != 72 {
		t.Fatalf("NA is %d bytes, want 72 (IPv6 header 40, advertisement 24, option 8)", len(b))
	}
	want := map[string]struct {
		got, want []byte
	}{
		"version":              {b[0:1], []byte{0x60}},
		"payload length":       {b[4:6], []byte{0, 32}},
		"next header (ICMPv6)": {b[6:7], []byte{58}},
		"hop limit":            {b[7:8], []byte{255}},
		"source":               {b[8:24], ip.To16()},
		"destination ff02::1":  {b[24:40], net.ParseIP("ff02::1").To16()},
		"type and code":        {b[40:42], []byte{136, 0}},
		"flags (override)":     {b[44:48], []byte{0x20, 0, 0, 0}},
		"target":               {b[48:64], ip.To16()},
		"option (target MAC)":  {b[64:72], append([]byte{2, 1}, mac...)},
	}
	for field, f := range want {
		if !bytes.Equal(f.got, f.want) {
			t.Errorf("%s = % x, want % x", field, f.got, f.want)
		}
	}
	// Summed with its checksum in place, a message folds to all ones.
	if c := icmpv6Checksum(b[8:24], b[24:40], b[40:]); c != 0 {
		t.Errorf("checksum over the message with its checksum = %#04x, want 0", c)
	}
	// The value, worked out apart from this code (RFC 1071's sum over the
	// pseudo-header and the message).
	if got := binary.BigEndian.Uint16(b[42:44]); got != 0xf3d6 {
		t.Errorf("checksum = %#04x, want 0xf3d6", got)
	}
}
