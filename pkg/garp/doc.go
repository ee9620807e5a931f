// Package garp announces IPv4 addresses on an Ethernet link with
// gratuitous ARP (RFC 5227, section 3): the frames `arping -U` sends, so
// that peers holding a stale neighbour entry for an address learn its new
// MAC at once.
package garp
