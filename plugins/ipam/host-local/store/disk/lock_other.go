//go:build !linux

package disk

import (
	"fmt"
	"runtime"
)

// fileLock is unavailable off Linux: the store needs flock(2) semantics
// shared with the reference plugin.
type fileLock struct{}

func errUnsupported() error {
	return fmt.Errorf("file lock: not supported on %s", runtime.GOOS)
}

func openLock(string) (*fileLock, error) { return nil, errUnsupported() }
func (*fileLock) lock() error            { return errUnsupported() }
func (*fileLock) unlock() error          { return errUnsupported() }
func (*fileLock) close() error           { return nil }
