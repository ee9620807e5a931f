package client

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// The DHCP ports (RFC 2131 section 4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	protoUDP      = 17
)

// encodeUDP4 wraps payload in a UDP datagram from src:ClientPort to
// dst:ServerPort inside an IPv4 packet with no options.
func encodeUDP4(payload []byte, src, dst netip.Addr) []byte {
	total := ipv4HeaderLen + udpHeaderLen + len(payload)
	b := make([]byte, total)
	b[0] = 0x45 // version 4, header of 5 words
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	b[8] = 64 // TTL
	b[9] = protoUDP
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:ipv4HeaderLen], 0))

	u := b[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], ClientPort)
	binary.BigEndian.PutUint16(u[2:], ServerPort)
	binary.BigEndian.PutUint16(u[4:], uint16(udpHeaderLen+len(payload)))
	copy(u[udpHeaderLen:], payload)
	// The pseudo-header: addresses, protocol, UDP length.
	var sum uint32
	for i := 0; i < 4; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(s[i:])) + uint32(binary.BigEndian.Uint16(d[i:]))
	}
	sum += protoUDP + uint32(len(u))
	c := checksum(u, sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return b
}

func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

var errNotForUs = errors.New("not a UDP datagram to the DHCP client port")

// decodeUDP4 returns the payload of an IPv4 packet that carries a UDP
// datagram to ClientPort, and its source address.
func decodeUDP4(b []byte) (payload []byte, src netip.Addr, err error) {
	if len(b) < ipv4HeaderLen || b[0]>>4 != 4 {
		return nil, netip.Addr{}, errNotForUs
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < ipv4HeaderLen || total < ihl+udpHeaderLen || total > len(b) || b[9] != protoUDP {
		return nil, netip.Addr{}, errNotForUs
	}
	if binary.BigEndian.Uint16(b[6:])&0x3fff != 0 { // a fragment
		return nil, netip.Addr{}, errNotForUs
	}
	u := b[ihl:total]
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	if binary.BigEndian.Uint16(u[2:]) != ClientPort || ulen < udpHeaderLen || ulen > len(u) {
		return nil, netip.Addr{}, errNotForUs
	}
	return u[udpHeaderLen:ulen], netip.AddrFrom4([4]byte(b[12:16])), nil
}
