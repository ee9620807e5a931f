//go:build !linux

package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

// Conn is a packet socket on one interface: Linux only.
type Conn struct{}

// Open reports that packet sockets are not supported on this GOOS.
func Open(name string) (*Conn, error) {
	return nil, fmt.Errorf("open %q: packet sockets are not supported on %s", name, runtime.GOOS)
}

// HardwareAddr is nil.
func (c *Conn) HardwareAddr() net.HardwareAddr { return nil }

// Close does nothing.
func (c *Conn) Close() error { return nil }

// Send is not supported.
func (c *Conn) Send([]byte, netip.Addr, netip.Addr, net.HardwareAddr) error {
	return fmt.Errorf("not supported on %s", runtime.GOOS)
}

// Receive is not supported.
func (c *Conn) Receive(context.Context) ([]byte, net.HardwareAddr, error) {
	return nil, nil, fmt.Errorf("not supported on %s", runtime.GOOS)
}
