//go:build linux && !amd64

package main

import "errors"

// writePort has no direct I/O port access off amd64: /dev/port only.
func writePort(port uint16, v byte) error {
	return errors.New("no I/O port access on this architecture")
}
