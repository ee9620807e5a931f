// Package cpuidle lets the benchmarks wait for the machine's CPUs to go
// idle between phases, so that one phase's background work (a guest's
// kernel threads, etcd's batched commits) is not timed as the next one's.
package cpuidle

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Settle waits until the CPUs have been mostly idle (under 10% busy) for
// one window, or until limit has passed, and returns how long it waited
// and how busy the CPUs were in the last window (-1 when /proc/stat could
// not be read).
func Settle(window, limit time.Duration) (time.Duration, float64) {
	start := time.Now()
	busy := 1.0
	for time.Since(start) < limit {
		b0, t0, err := Ticks()
		if err != nil {
			return time.Since(start), -1
		}
		time.Sleep(window)
		b1, t1, err := Ticks()
		if err != nil || t1 == t0 {
			return time.Since(start), -1
		}
		if busy = float64(b1-b0) / float64(t1-t0); busy < 0.1 {
			break
		}
	}
	return time.Since(start), busy
}

// Ticks reads the busy and the total clock ticks of all CPUs from the
// first line of /proc/stat.
func Ticks() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal; guest time is in user.
	for i, f := range fields[1:min(len(fields), 9)] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		total += v
		if i != 3 && i != 4 && i != 7 { // idle, iowait, steal
			busy += v
		}
	}
	return busy, total, nil
}
