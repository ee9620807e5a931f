//go:build linux

package main

import (
	"testing"
	"time"
)

func TestCPUTicks(t *testing.T) {
	b0, t0, err := cpuTicks()
	if err != nil {
		t.Fatal(err)
	}
	if t0 == 0 || b0 > t0 {
		t.Fatalf("busy %d, total %d: want total > 0 and busy ≤ total", b0, t0)
	}
	time.Sleep(30 * time.Millisecond)
	b1, t1, err := cpuTicks()
	if err != nil {
		t.Fatal(err)
	}
	if b1 < b0 || t1 < t0 {
		t.Fatalf("ticks went back: busy %d → %d, total %d → %d", b0, b1, t0, t1)
	}
}

func TestSettleStopsAtTheLimit(t *testing.T) {
	waited, busy := settle(0)
	if waited > time.Second {
		t.Errorf("settle(0) waited %v", waited)
	}
	if busy != 1 {
		t.Errorf("settle(0) measured nothing, busy = %v, want 1", busy)
	}
}
