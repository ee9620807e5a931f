// Package announce tells an Ethernet segment where addresses are, so that
// peers holding a stale neighbour entry for an address learn its new MAC at
// once: a gratuitous ARP request for IPv4 (RFC 5227, section 3: the frame
// `arping -U` sends) and an unsolicited neighbour advertisement with the
// override flag for IPv6 (RFC 4861, section 7.2.6), both sent to every
// node on the link through a packet socket.
package announce
