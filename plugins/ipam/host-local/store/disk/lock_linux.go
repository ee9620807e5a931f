//go:build linux

package disk

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fileLock is an exclusive flock(2) on the network's lock file, the same
// lock the reference plugin takes, so the two never run at once.
type fileLock struct {
	f  *os.File
	fd int // f's descriptor, fetched once: Fd() costs a syscall per call
}

func openLock(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return &fileLock{f: f, fd: int(f.Fd())}, nil
}

func (l *fileLock) flock(how int) error {
	for {
		err := unix.Flock(l.fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (l *fileLock) lock() error   { return l.flock(unix.LOCK_EX) }
func (l *fileLock) unlock() error { return l.flock(unix.LOCK_UN) }
func (l *fileLock) close() error  { return l.f.Close() }
