package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// PacketConn is what a Mux reads and writes: a Conn.
type PacketConn interface {
	Transport
	Close() error
}

// Mux shares one PacketConn among the exchanges on an interface: one
// reader hands each reply to the exchange that sent its transaction ID.
// With a socket per exchange instead, every socket would receive every
// broadcast reply, and a daemon taking or renewing n leases at once would
// handle n² packets.
type Mux struct {
	c    PacketConn
	done chan struct{} // closed when the reader stops
	err  error         // why, set before done is closed

	mu   sync.Mutex
	subs map[dhcpv4.TransactionID]*MuxTransport
}

type packet struct {
	b   []byte
	mac net.HardwareAddr
}

// NewMux starts reading c; Close stops.
func NewMux(c PacketConn) *Mux {
	m := &Mux{c: c, done: make(chan struct{}), subs: map[dhcpv4.TransactionID]*MuxTransport{}}
	go m.read()
	return m
}

func (m *Mux) read() {
	defer close(m.done)
	for {
		b, mac, err := m.c.Receive(context.Background())
		if err != nil {
			m.err = err
			return
		}
		if len(b) < 8 {
			continue
		}
		m.mu.Lock()
		t := m.subs[dhcpv4.TransactionID(b[4:8])]
		m.mu.Unlock()
		if t == nil {
			continue
		}
		select {
		case t.in <- packet{b, mac}:
		default: // the exchange is not reading: as a full socket would
		}
	}
}

// Done is closed when the Mux no longer reads (its interface went, or
// Close): it is then of no use.
func (m *Mux) Done() <-chan struct{} { return m.done }

// Close closes the connection and waits for the reader.
func (m *Mux) Close() error {
	err := m.c.Close()
	<-m.done
	return err
}

// Transport returns a Transport for one exchange; Close it after.
func (m *Mux) Transport() *MuxTransport {
	return &MuxTransport{m: m, in: make(chan packet, 16)}
}

// MuxTransport is one exchange's share of a Mux: it receives the replies
// to the transactions it sent.
type MuxTransport struct {
	m    *Mux
	in   chan packet
	xids []dhcpv4.TransactionID
}

// ErrMuxClosed says the Mux's connection is gone.
var ErrMuxClosed = errors.New("the interface's DHCP socket is closed")

// HardwareAddr is the interface's MAC.
func (t *MuxTransport) HardwareAddr() net.HardwareAddr { return t.m.c.HardwareAddr() }

// Send sends a DHCP message, and from then on takes the replies to its
// transaction ID.
func (t *MuxTransport) Send(payload []byte, src, dst netip.Addr, dstMAC net.HardwareAddr) error {
	if len(payload) >= 8 {
		xid := dhcpv4.TransactionID(payload[4:8])
		t.m.mu.Lock()
		if _, ok := t.m.subs[xid]; !ok {
			t.m.subs[xid] = t
			t.xids = append(t.xids, xid)
		}
		t.m.mu.Unlock()
	}
	return t.m.c.Send(payload, src, dst, dstMAC)
}

// Receive returns the next reply to one of the exchange's transactions.
func (t *MuxTransport) Receive(ctx context.Context) ([]byte, net.HardwareAddr, error) {
	select {
	case p := <-t.in:
		return p.b, p.mac, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-t.m.done:
		return nil, nil, errors.Join(ErrMuxClosed, t.m.err)
	}
}

// Close gives the exchange's transaction IDs back.
func (t *MuxTransport) Close() error {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	for _, x := range t.xids {
		if t.m.subs[x] == t {
			delete(t.m.subs, x)
		}
	}
	t.xids = nil
	return nil
}
