package cpuidle

import (
	"testing"
	"time"
)

func TestTicks(t *testing.T) {
	b0, t0, err := Ticks()
	if err != nil {
		t.Fatal(err)
	}
	if t0 == 0 || b0 > t0 {
		t.Fatalf("busy %d, total %d: want total > 0 and busy ≤ total", b0, t0)
	}
	time.Sleep(30 * time.Millisecond)
	b1, t1, err := Ticks()
	if err != nil {
		t.Fatal(err)
	}
	if b1 < b0 || t1 < t0 {
		t.Fatalf("ticks went back: busy %d → %d, total %d → %d", b0, b1, t0, t1)
	}
}

func TestSettleStopsAtTheLimit(t *testing.T) {
	waited, busy := Settle(500*time.Millisecond, 0)
	if waited > time.Second {
		t.Errorf("Settle with limit 0 waited %v", waited)
	}
	if busy != 1 {
		t.Errorf("Settle with limit 0 measured nothing, busy = %v, want 1", busy)
	}
}
