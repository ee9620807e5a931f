//go:build linux

package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// outb writes one byte to an I/O port; the calling thread needs the port's
// permission (ioperm) first.
func outb(port uint16, value uint8)

// writePort writes v to the I/O port directly, for kernels built without
// /dev/port (Debian's cloud flavour). ioperm's grant is per thread, so the
// goroutine stays on one thread from the grant to the write.
func writePort(port uint16, v byte) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Ioperm(int(port), 1, 1); err != nil {
		return err
	}
	outb(port, v)
	return nil
}
