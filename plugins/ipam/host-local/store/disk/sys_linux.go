//go:build linux

package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// maxLockWait caps the wait between two tries of a held lock.
const maxLockWait = 10 * time.Millisecond

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

// lock takes the lock, or gives up when ctx is done. flock(2) has no timed
// form, and Go restarts it after a signal, so a blocking call could only be
// bounded by leaving a thread blocked in it. Instead lock tries without
// blocking and, while another process holds the lock, waits between tries:
// 1 ms, doubling up to maxLockWait. An uncontended lock costs one call.
func (l *fileLock) lock(ctx context.Context) error {
	wait := time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("held by another process: %w", err)
		}
		err := l.flock(unix.LOCK_EX | unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, maxLockWait)
	}
}

func (l *fileLock) unlock() error { return l.flock(unix.LOCK_UN) }
func (l *fileLock) close() error  { return l.f.Close() }

// readSmall reads the whole file at path with three system calls, where
// os.ReadFile takes six: a full scan reads every lease. O_NONBLOCK keeps a
// FIFO named like a lease from blocking the scan.
func readSmall(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 256)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
