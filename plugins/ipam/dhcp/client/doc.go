// Package client speaks DHCPv4 (RFC 2131) for one attachment at a time: it
// takes a lease (DISCOVER, OFFER, REQUEST, ACK), renews it and releases it.
//
// Many attachments share one MAC address on an ipvlan master, so an
// attachment is known to the server by its client identifier (option 61,
// RFC 4361 form) alone, the broadcast flag asks the server to broadcast
// its replies (a unicast to the shared MAC would reach the master, not the
// container), and a reply is matched by transaction ID and client
// identifier, never by MAC.
//
// The messages travel over a Transport; Conn is the real one, a packet
// socket on one interface (AF_PACKET, needs CAP_NET_RAW in the interface's
// namespace), which also lets a DHCPRELEASE leave from the leased address
// whatever addresses the interface itself holds.
package client
