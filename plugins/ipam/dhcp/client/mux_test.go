package client

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// chanConn is a PacketConn whose received packets the test feeds.
type chanConn struct {
	in     chan []byte
	closed chan struct{}
}

func (c *chanConn) HardwareAddr() net.HardwareAddr { return sharedMAC }
func (c *chanConn) Send([]byte, netip.Addr, netip.Addr, net.HardwareAddr) error {
	return nil
}
func (c *chanConn) Receive(ctx context.Context) ([]byte, net.HardwareAddr, error) {
	select {
	case b := <-c.in:
		return b, serverMAC, nil
	case <-c.closed:
		return nil, nil, net.ErrClosed
	}
}
func (c *chanConn) Close() error { close(c.closed); return nil }

func TestMuxDispatchesByTransactionID(t *testing.T) {
	c := &chanConn{in: make(chan []byte), closed: make(chan struct{})}
	m := NewMux(c)
	a, b := m.Transport(), m.Transport()
	msg := func(xid byte) []byte { return []byte{2, 1, 6, 0, xid, xid, xid, xid} }
	if err := a.Send(msg(1), netip.Addr{}, netip.Addr{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(msg(2), netip.Addr{}, netip.Addr{}, nil); err != nil {
		t.Fatal(err)
	}
	c.in <- msg(3) // nobody's: dropped
	c.in <- msg(2)
	c.in <- msg(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tt := range []struct {
		tr  *MuxTransport
		xid byte
	}{{a, 1}, {b, 2}} {
		got, _, err := tt.tr.Receive(ctx)
		if err != nil || got[4] != tt.xid {
			t.Errorf("transport of xid %d received %v, %v", tt.xid, got, err)
		}
	}
	a.Close()
	c.in <- msg(1) // a gave its xid back: dropped
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if got, _, err := a.Receive(short); err == nil {
		t.Errorf("closed transport received %v", got)
	}
	m.Close()
	if _, _, err := b.Receive(ctx); err == nil {
		t.Error("Receive after the Mux closed: no error")
	}
}
