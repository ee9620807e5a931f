package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fakeServer is a DHCP server behind a Transport, like dnsmasq on a LAN
// where every client shares one MAC: it offers every DISCOVER the lowest
// address no client holds (or the requested one, if free), not reserving
// it, and NAKs a REQUEST for an address another client identifier holds.
type fakeServer struct {
	mu     sync.Mutex
	leases map[netip.Addr]string // address -> client identifier
	next   []netip.Addr
	// replies of all clients, broadcast: each client's transport sees all.
	subs []chan []byte
}

var (
	serverIP  = netip.MustParseAddr("192.0.2.1")
	serverMAC = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	sharedMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

func newFakeServer(pool ...string) *fakeServer {
	s := &fakeServer{leases: map[netip.Addr]string{}}
	for _, p := range pool {
		s.next = append(s.next, netip.MustParseAddr(p))
	}
	return s
}

func (s *fakeServer) transport() *fakeTransport {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan []byte, 256)
	s.subs = append(s.subs, ch)
	return &fakeTransport{s: s, in: ch}
}

func (s *fakeServer) handle(b []byte) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cid := string(m.GetOneOption(dhcpv4.OptionClientIdentifier))
	var reply *dhcpv4.DHCPv4
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		addr := netip.Addr{}
		if req, ok := netip.AddrFromSlice(m.RequestedIPAddress().To4()); ok {
			if _, held := s.leases[req]; !held && contains(s.next, req) {
				addr = req
			}
		}
		for _, a := range s.next {
			if addr.IsValid() {
				break
			}
			if _, held := s.leases[a]; !held {
				addr = a
			}
		}
		if !addr.IsValid() {
			return
		}
		reply, _ = dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(addr.AsSlice()))
	case dhcpv4.MessageTypeRequest:
		addr, _ := netip.AddrFromSlice(m.RequestedIPAddress().To4())
		typ := dhcpv4.MessageTypeAck
		if owner, held := s.leases[addr]; held && owner != cid {
			typ = dhcpv4.MessageTypeNak
		} else {
			s.leases[addr] = cid
		}
		reply, _ = dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(addr.AsSlice()))
	case dhcpv4.MessageTypeRelease:
		addr, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
		if s.leases[addr] == cid {
			delete(s.leases, addr)
		}
		return
	default:
		return
	}
	reply.UpdateOption(dhcpv4.OptServerIdentifier(serverIP.AsSlice()))
	reply.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32)))
	reply.UpdateOption(dhcpv4.OptIPAddressLeaseTime(2 * time.Minute))
	reply.UpdateOption(dhcpv4.OptClientIdentifier([]byte(cid)))
	out := reply.ToBytes()
	for _, ch := range s.subs {
		ch <- out
	}
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

type fakeTransport struct {
	s  *fakeServer
	in chan []byte
}

func (t *fakeTransport) HardwareAddr() net.HardwareAddr { return sharedMAC }

func (t *fakeTransport) Send(payload []byte, _, _ netip.Addr, _ net.HardwareAddr) error {
	t.s.handle(payload)
	return nil
}

func (t *fakeTransport) Receive(ctx context.Context) ([]byte, net.HardwareAddr, error) {
	select {
	case b := <-t.in:
		return b, serverMAC, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// testClaims is client.Claims over a map, as the daemon keeps it.
type testClaims struct {
	mu     *sync.Mutex
	claims map[netip.Addr]string
	key    string
}

func (c testClaims) Claim(a netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.claims[a]; ok && k != c.key {
		return false
	}
	c.set(a)
	return true
}

func (c testClaims) Hint(after netip.Addr, subnet netip.Prefix) netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a := after.Next(); subnet.Contains(a); a = a.Next() {
		if _, ok := c.claims[a]; !ok {
			c.set(a)
			return a
		}
	}
	return netip.Addr{}
}

func (c testClaims) set(a netip.Addr) {
	for x, k := range c.claims {
		if k == c.key {
			delete(c.claims, x)
		}
	}
	c.claims[a] = c.key
}

func TestAcquireConcurrentSharedMAC(t *testing.T) {
	const n = 10
	pool := []string{}
	for i := 10; i < 10+n; i++ {
		pool = append(pool, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String())
	}
	s := newFakeServer(pool...)
	var (
		mu     sync.Mutex
		claims = map[netip.Addr]string{}
		wg     sync.WaitGroup
		got    = make([]*Lease, n)
		errs   = make([]error, n)
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range n {
		tr := s.transport()
		id := Identity{ClientID: []byte{255, byte(i)}, Broadcast: true}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = Acquire(ctx, tr, id, testClaims{&mu, claims, string(id.ClientID)})
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("attachment %d: %v", i, errs[i])
			continue
		}
		if j, dup := seen[got[i].Address.Addr()]; dup {
			t.Errorf("attachments %d and %d both leased %s", j, i, got[i].Address)
		}
		seen[got[i].Address.Addr()] = i
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.leases) != n {
		t.Errorf("server holds %d leases, want %d", len(s.leases), n)
	}
}

func TestAcquireNoServer(t *testing.T) {
	s := newFakeServer() // an empty pool: never answers
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	_, err := Acquire(ctx, s.transport(), Identity{ClientID: []byte{1}}, testClaims{&mu, map[netip.Addr]string{}, "a"})
	if !errors.Is(err, ErrNoAnswer) {
		t.Errorf("got %v, want ErrNoAnswer", err)
	}
}

func TestRenewNAK(t *testing.T) {
	s := newFakeServer("192.0.2.10")
	s.leases[netip.MustParseAddr("192.0.2.10")] = "someone else"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l := &Lease{Address: netip.MustParsePrefix("192.0.2.10/24"), Server: serverIP, Duration: time.Minute}
	_, err := Renew(ctx, s.transport(), Identity{ClientID: []byte{1}, Broadcast: true}, l)
	var nak *NAKError
	if !errors.As(err, &nak) {
		t.Fatalf("got %v, want a *NAKError", err)
	}
}

func TestMatches(t *testing.T) {
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(sharedMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	if err != nil {
		t.Fatal(err)
	}
	mine, other := []byte{255, 1}, []byte{255, 2}
	reply := func(cid []byte, xid dhcpv4.TransactionID) *dhcpv4.DHCPv4 {
		r, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithTransactionID(xid))
		if cid != nil {
			r.UpdateOption(dhcpv4.OptClientIdentifier(cid))
		}
		return r
	}
	tests := []struct {
		name  string
		reply *dhcpv4.DHCPv4
		want  bool
	}{
		{"same xid, our client id", reply(mine, req.TransactionID), true},
		{"same xid, no client id echoed", reply(nil, req.TransactionID), true},
		{"same xid and MAC, another client id", reply(other, req.TransactionID), false},
		{"another xid", reply(mine, dhcpv4.TransactionID{1, 2, 3, 4}), false},
		{"a request, not a reply", req, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Matches(tt.reply, req.TransactionID, mine); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	if !bytes.Equal(reply(other, req.TransactionID).ClientHWAddr, sharedMAC) {
		t.Error("the replies do not share the MAC: the test proves nothing")
	}
}
