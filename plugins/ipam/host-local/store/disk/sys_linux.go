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

// readSmall reads the whole file at path; see dir.read.
func readSmall(path string) ([]byte, error) {
	return readAt(unix.AT_FDCWD, path)
}

// dir is an open directory whose files are read by name, without walking
// the directory's path again for each.
type dir struct {
	f  *os.File
	fd int
}

func openDir(path string) (*dir, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open directory: %w", err)
	}
	return &dir{f: f, fd: int(f.Fd())}, nil
}

func (d *dir) names() ([]string, error) {
	names, err := d.f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	return names, nil
}

func (d *dir) read(name string) ([]byte, error) { return readAt(d.fd, name) }
func (d *dir) close() error                     { return d.f.Close() }

// readAt reads the whole small file name, relative to the directory dirfd,
// with three system calls where os.ReadFile takes six: reconciling reads
// every lease. A read shorter than the buffer is taken for the end of the
// file, as it is for a regular file on a local file system. O_NONBLOCK
// keeps a FIFO named like a lease from blocking the scan.
func readAt(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 512)
	n := 0
	for {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: name, Err: err}
		}
		n += m
		if n < len(buf) {
			return buf[:n], nil
		}
		buf = append(buf, make([]byte, len(buf))...)
	}
}
