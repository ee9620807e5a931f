//go:build linux

package nldump

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failures  int // interrupted answers before a complete one
		wantCalls int
		wantErr   bool
	}{
		{"complete at once", 0, 1, false},
		{"interrupted twice", 2, 3, false},
		{"always interrupted", Attempts, Attempts, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			got, err := Retry(func() (int, error) {
				calls++
				if calls <= tc.failures {
					return -1, fmt.Errorf("dump links: %w", netlink.ErrDumpInterrupted)
				}
				return 42, nil
			})
			if calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != 42 {
				t.Errorf("value = %d, want 42", got)
			}
			if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
				t.Errorf("err = %v, want it to wrap ErrDumpInterrupted", err)
			}
		})
	}
	t.Run("other errors are not retried", func(t *testing.T) {
		calls := 0
		want := errors.New("permission denied")
		_, err := Retry(func() (int, error) { calls++; return 0, want })
		if calls != 1 || !errors.Is(err, want) {
			t.Errorf("calls = %d, err = %v; want 1 call and %v", calls, err, want)
		}
	})
}
