package client

import (
	"os"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// TestMuxCloseStopsReader: closing a real Conn wakes the Mux's blocked
// reader, so a daemon's Close returns.
func TestMuxCloseStopsReader(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace and a packet socket")
	}
	n := testenv.NewNS(t)
	var c *Conn
	if err := n.Do(func(ns.NetNS) error {
		var err error
		c, err = Open("lo")
		return err
	}); err != nil {
		t.Fatalf("open a packet socket on lo: %v", err)
	}
	m := NewMux(c)
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Mux.Close still waits for its reader after 10s")
	}
}
