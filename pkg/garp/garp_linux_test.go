//go:build linux

package garp

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
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
