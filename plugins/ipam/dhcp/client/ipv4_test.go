package client

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestUDP4RoundTrip(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("192.0.2.1")
	pkt := encodeUDP4([]byte("hello"), src, dst)
	if c := checksum(pkt[:ipv4HeaderLen], 0); c != 0 {
		t.Errorf("IPv4 header checksum does not verify: %#x", c)
	}
	// The server's reply goes to port 68: turn the datagram around.
	reply := bytes.Clone(pkt)
	binary.BigEndian.PutUint16(reply[ipv4HeaderLen+2:], ClientPort)
	payload, from, err := decodeUDP4(reply)
	if err != nil {
		t.Fatal(err)
	}
	if string(payload) != "hello" || from != src {
		t.Errorf("got %q from %s, want \"hello\" from %s", payload, from, src)
	}
	// To port 67 it is not for a client.
	if _, _, err := decodeUDP4(pkt); err == nil {
		t.Error("decoded a datagram to port 67")
	}
}

func FuzzDecodeUDP4(f *testing.F) {
	f.Add(encodeUDP4([]byte("x"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")))
	f.Add([]byte{0x45, 0, 0, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, _, err := decodeUDP4(b)
		if err == nil && len(payload) > len(b) {
			t.Fatalf("payload of %d bytes from a packet of %d", len(payload), len(b))
		}
	})
}
