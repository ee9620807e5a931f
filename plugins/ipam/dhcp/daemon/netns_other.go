//go:build !linux

package daemon

import (
	"fmt"
	"net/netip"
	"runtime"
)

func resolveMaster(name string) (string, error) {
	return "", fmt.Errorf("master %q: not supported on %s", name, runtime.GOOS)
}

func namespaceExists(string) bool { return false }

func removeAddress(string, string, netip.Prefix) error {
	return fmt.Errorf("not supported on %s", runtime.GOOS)
}

func holdsAddress(string, string, netip.Prefix) error {
	return fmt.Errorf("not supported on %s", runtime.GOOS)
}
