package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Transport carries DHCP messages over one interface. Conn is the real
// one; tests may put a fake server behind it.
type Transport interface {
	// HardwareAddr is the interface's MAC (chaddr of every message).
	HardwareAddr() net.HardwareAddr
	// Send sends payload from src:68 to dst:67 in a frame to dstMAC (nil:
	// the broadcast address).
	Send(payload []byte, src, dst netip.Addr, dstMAC net.HardwareAddr) error
	// Receive returns the next datagram to port 68 and its sender's MAC.
	Receive(ctx context.Context) ([]byte, net.HardwareAddr, error)
}

// Identity is what one attachment tells the server about itself.
type Identity struct {
	// ClientID is the value of option 61, the attachment's identity.
	ClientID []byte
	// Broadcast sets the broadcast flag: the server broadcasts its replies.
	Broadcast bool
	// Request lists the option codes asked for (option 55).
	Request []dhcpv4.OptionCode
	// Provide are further options sent in DISCOVER and REQUEST (host-name,
	// ...). A client identifier here is ignored: ClientID is sent.
	Provide []dhcpv4.Option
}

// Route is a static route a lease carries (option 121, RFC 3442).
type Route struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
}

// Lease is an address leased to one attachment, with the configuration
// that came with it.
type Lease struct {
	Address netip.Prefix `json:"address"`
	Router  netip.Addr   `json:"router,omitzero"`
	Routes  []Route      `json:"routes,omitempty"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	Domain  string       `json:"domain,omitempty"`
	// Server is the server identifier (option 54); ServerMAC the MAC its
	// ACK came from, where a DHCPRELEASE goes.
	Server    netip.Addr `json:"server"`
	ServerMAC string     `json:"serverMAC"`
	// Bound is when the lease was granted; Duration, T1 and T2 count from
	// it (options 51, 58, 59; RFC 2131 defaults for the last two).
	Bound    time.Time     `json:"bound"`
	Duration time.Duration `json:"duration"`
	T1       time.Duration `json:"t1"`
	T2       time.Duration `json:"t2"`
}

// Expiry is when the lease ends.
func (l *Lease) Expiry() time.Time { return l.Bound.Add(l.Duration) }

// NAKError is a server's DHCPNAK.
type NAKError struct {
	Server  netip.Addr
	Address netip.Addr
	Message string
}

func (e *NAKError) Error() string {
	s := fmt.Sprintf("server %s refused %s (DHCPNAK)", e.Server, e.Address)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ErrNoAnswer says no server answered before the context ended.
var ErrNoAnswer = errors.New("no DHCP server answered")

// first and max wait of the retransmission schedule (RFC 2131 4.1 uses
// 4 s doubling to 64 s; a container start cannot wait that long, and the
// servers on a LAN answer in milliseconds).
const (
	firstWait = time.Second
	maxWait   = 4 * time.Second
)

// Claims coordinates the attachments of one caller that share a MAC, so
// that no two of them request the same address.
type Claims interface {
	// Claim tells whether the caller's attachment may request addr (no
	// other attachment holds or requests it), and if so claims it.
	Claim(addr netip.Addr) bool
	// Hint returns the first address of subnet after after that no
	// attachment claims, claimed for this one (the invalid Addr when
	// there is none).
	Hint(after netip.Addr, subnet netip.Prefix) netip.Addr
}

// Acquire takes a lease for id: DISCOVER, OFFER, REQUEST, ACK, until ctx
// ends. A server offers concurrent DISCOVERs that share a MAC the same
// address (dnsmasq does): an OFFER of an address another attachment
// claims is passed over and the next DISCOVER asks for an unclaimed one
// (option 50, a hint the server may ignore); a NAK (the server gave the
// address to another client meanwhile) starts again. So concurrent
// attachments converge on distinct addresses, without failing.
func Acquire(ctx context.Context, t Transport, id Identity, claims Claims) (*Lease, error) {
	var (
		lastErr error
		hint    netip.Addr
	)
	for round := 0; ; round++ {
		if round > 0 {
			// Spread the retries of attachments that lost the same race.
			if err := sleep(ctx, time.Duration(10+rand.IntN(40))*time.Millisecond); err != nil {
				return nil, errors.Join(lastErr, err)
			}
		}
		var mods []dhcpv4.Modifier
		if hint.IsValid() {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(hint.AsSlice())))
		}
		discover := message(t, id, dhcpv4.MessageTypeDiscover, mods...)
		offer, _, err := exchange(ctx, t, id, discover, netip.Addr{}, dhcpv4.MessageTypeOffer)
		if err != nil {
			return nil, errors.Join(lastErr, fmt.Errorf("DHCPDISCOVER: %w", err))
		}
		addr, _ := netip.AddrFromSlice(offer.YourIPAddr.To4())
		server, _ := netip.AddrFromSlice(offer.ServerIdentifier().To4())
		if !claims.Claim(addr) {
			lastErr = fmt.Errorf("server %s offered %s, which another attachment claims", server, addr)
			hint = claims.Hint(addr, subnetOf(offer, addr))
			continue
		}
		req := message(t, id, dhcpv4.MessageTypeRequest,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())))
		ack, mac, err := exchange(ctx, t, id, req, server, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
		if err != nil {
			return nil, errors.Join(lastErr, fmt.Errorf("DHCPREQUEST for %s: %w", addr, err))
		}
		if ack.MessageType() == dhcpv4.MessageTypeNak {
			lastErr = &NAKError{Server: server, Address: addr, Message: ack.Message()}
			hint = netip.Addr{}
			continue
		}
		return leaseFrom(ack, mac, time.Now())
	}
}

// subnetOf is addr's subnet by the message's subnet mask (a /24 when the
// server sent none).
func subnetOf(m *dhcpv4.DHCPv4, addr netip.Addr) netip.Prefix {
	ones := 24
	if mask := m.SubnetMask(); mask != nil {
		if o, bits := mask.Size(); bits == 32 {
			ones = o
		}
	}
	return netip.PrefixFrom(addr, ones).Masked()
}

// Renew extends l: a REQUEST for l's address with no server identifier
// and no ciaddr (the INIT-REBOOT form, RFC 2131 4.3.2), broadcast, so the
// answer is broadcast too and reaches the interface in every ipvlan mode:
// a unicast to the leased address would go to the container's slave,
// which in l3 and l3s modes nothing on the LAN can resolve. A NAK is a
// *NAKError.
func Renew(ctx context.Context, t Transport, id Identity, l *Lease) (*Lease, error) {
	addr := l.Address.Addr()
	req := message(t, id, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(addr.AsSlice())))
	ack, mac, err := exchange(ctx, t, id, req, netip.Addr{}, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", addr, err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		server, _ := netip.AddrFromSlice(ack.ServerIdentifier().To4())
		return nil, &NAKError{Server: server, Address: addr, Message: ack.Message()}
	}
	return leaseFrom(ack, mac, time.Now())
}

// Release sends a DHCPRELEASE for l: from the leased address to the
// server, in a frame to the server's MAC, so the server's kernel takes it
// as any unicast datagram (one from 0.0.0.0 would be a martian). No answer
// comes back (RFC 2131 4.4.6).
func Release(t Transport, id Identity, l *Lease) error {
	mac, err := net.ParseMAC(l.ServerMAC)
	if err != nil {
		mac = nil // broadcast frame, unicast datagram
	}
	rel := message(t, id, dhcpv4.MessageTypeRelease,
		dhcpv4.WithClientIP(l.Address.Addr().AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.Server.AsSlice())))
	rel.SetUnicast()
	if err := t.Send(rel.ToBytes(), l.Address.Addr(), l.Server, mac); err != nil {
		return fmt.Errorf("DHCPRELEASE of %s to %s: %w", l.Address.Addr(), l.Server, err)
	}
	return nil
}

func message(t Transport, id Identity, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	// New fails only when the system has no randomness for the xid.
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(t.HardwareAddr()), dhcpv4.WithMessageType(typ))
	if err != nil {
		panic(err)
	}
	if id.Broadcast && typ != dhcpv4.MessageTypeRelease {
		m.SetBroadcast()
	}
	for _, o := range id.Provide {
		m.UpdateOption(o)
	}
	m.UpdateOption(dhcpv4.OptClientIdentifier(id.ClientID))
	if typ != dhcpv4.MessageTypeRelease {
		m.UpdateOption(dhcpv4.OptMaxMessageSize(1500))
		if len(id.Request) > 0 {
			m.UpdateOption(dhcpv4.OptParameterRequestList(id.Request...))
		}
	}
	for _, mod := range mods {
		mod(m)
	}
	return m
}

// exchange broadcasts m until a reply of one of the wanted types arrives
// for m's transaction and id's client identifier (from server, when
// valid), retransmitting on a doubling schedule until ctx ends.
func exchange(ctx context.Context, t Transport, id Identity, m *dhcpv4.DHCPv4, server netip.Addr, want ...dhcpv4.MessageType) (*dhcpv4.DHCPv4, net.HardwareAddr, error) {
	payload := m.ToBytes()
	for wait := firstWait; ; wait = min(2*wait, maxWait) {
		if err := t.Send(payload, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), nil); err != nil {
			return nil, nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		reply, mac, err := awaitReply(wctx, t, id, m.TransactionID, server, want)
		cancel()
		if err == nil {
			return reply, mac, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ErrNoAnswer
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, err
		}
	}
}

func awaitReply(ctx context.Context, t Transport, id Identity, xid dhcpv4.TransactionID, server netip.Addr, want []dhcpv4.MessageType) (*dhcpv4.DHCPv4, net.HardwareAddr, error) {
	for {
		b, mac, err := t.Receive(ctx)
		if err != nil {
			return nil, nil, err
		}
		// Decode only replies to this transaction: op 2, xid at 4-7.
		if len(b) < 8 || b[0] != 2 || dhcpv4.TransactionID(b[4:8]) != xid {
			continue
		}
		reply, err := dhcpv4.FromBytes(b)
		if err != nil || !Matches(reply, xid, id.ClientID) {
			continue
		}
		if server.IsValid() {
			if s, _ := netip.AddrFromSlice(reply.ServerIdentifier().To4()); s != server {
				continue
			}
		}
		for _, w := range want {
			if reply.MessageType() == w {
				return reply, mac, nil
			}
		}
	}
}

// Matches tells whether reply answers the transaction xid of the client
// clientID: a BOOTREPLY with that xid whose client identifier, when the
// server echoes it (RFC 6842), is clientID. The MAC is never compared:
// all of a master's attachments share it.
func Matches(reply *dhcpv4.DHCPv4, xid dhcpv4.TransactionID, clientID []byte) bool {
	if reply.OpCode != dhcpv4.OpcodeBootReply || reply.TransactionID != xid {
		return false
	}
	if echoed := reply.GetOneOption(dhcpv4.OptionClientIdentifier); echoed != nil && !bytes.Equal(echoed, clientID) {
		return false
	}
	return true
}

func leaseFrom(ack *dhcpv4.DHCPv4, mac net.HardwareAddr, now time.Time) (*Lease, error) {
	addr, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || addr.IsUnspecified() {
		return nil, fmt.Errorf("DHCPACK without an address (yiaddr %s)", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = addr.AsSlice()
		mask = net.IP(mask).DefaultMask()
	}
	ones, bits := net.IPMask(mask).Size()
	if bits != 32 {
		return nil, fmt.Errorf("DHCPACK with an invalid subnet mask %s", net.IP(mask))
	}
	server, _ := netip.AddrFromSlice(ack.ServerIdentifier().To4())
	d := ack.IPAddressLeaseTime(0)
	if d <= 0 {
		return nil, fmt.Errorf("DHCPACK for %s without a lease time", addr)
	}
	l := &Lease{
		Address:   netip.PrefixFrom(addr, ones),
		Server:    server,
		ServerMAC: mac.String(),
		Bound:     now,
		Duration:  d,
		T1:        ack.IPAddressRenewalTime(d / 2),
		T2:        ack.IPAddressRebindingTime(d * 7 / 8),
		Domain:    ack.DomainName(),
	}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	for _, r := range ack.ClasslessStaticRoute() {
		dst, ok := netip.AddrFromSlice(r.Dest.IP.To4())
		ones, _ := r.Dest.Mask.Size()
		via, _ := netip.AddrFromSlice(r.Router.To4())
		if ok {
			l.Routes = append(l.Routes, Route{Dst: netip.PrefixFrom(dst, ones).Masked(), Via: via})
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	return l, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
