// Package testenv gives privileged tests what they need from the kernel:
// a check that they may run, network namespaces, dummy masters, netlink
// handles bound to a namespace and the built plugin binaries.
//
// A privileged test calls RequireKernel first. Outside the vmtest guest,
// without root or without ipvlan in the kernel, the test is skipped with
// the reason; inside the guest (VMTEST=1), where it must run, it fails.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/internal/vmtest"
)

// InVM reports whether the program runs inside the vmtest guest.
func InVM() bool { return os.Getenv("VMTEST") == "1" }

// RequireKernel skips the test, or fails it inside the guest, unless it
// runs as root on a kernel that can create ipvlan links.
func RequireKernel(t testing.TB) {
	t.Helper()
	if err := Probe(); err != nil {
		if InVM() {
			t.Fatalf("privileged test cannot run in the VM: %v", err)
		}
		t.Skipf("needs root and a kernel with ipvlan (make test runs it in a VM): %v", err)
	}
}

// Probe reports why privileged work cannot run here, or nil: it needs root
// and creates a dummy link and an ipvlan link on it in a throwaway
// namespace.
func Probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	n, err := testutils.NewNS()
	if err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	defer func() {
		n.Close()
		_ = testutils.UnmountNS(n)
	}()
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}}); err != nil {
		return fmt.Errorf("ip link add probe0 type dummy: %w", err)
	}
	master, err := h.LinkByName("probe0")
	if err != nil {
		return err
	}
	iv := &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "probe1", ParentIndex: master.Attrs().Index}}
	if err := h.LinkAdd(iv); err != nil {
		return fmt.Errorf("ip link add link probe0 name probe1 type ipvlan: %w", err)
	}
	return nil
}

// NewNS creates a network namespace with lo up, bind-mounted under
// /run/netns, and removes it when the test ends.
func NewNS(t testing.TB) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		_ = testutils.UnmountNS(n)
	})
	h := Handle(t, n)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("look up lo: %v", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}
	return n
}

// Handle returns a netlink handle bound to namespace n, closed at cleanup.
func Handle(t testing.TB, n ns.NetNS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle for %s: %v", n.Path(), err)
	}
	t.Cleanup(h.Close)
	return h
}

// AddDummy creates an up dummy link in n: ip link add name type dummy.
func AddDummy(t testing.TB, n ns.NetNS, name string) netlink.Link {
	t.Helper()
	h := Handle(t, n)
	if err := h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("ip link add %s type dummy: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
	return l
}

// PluginDir is the directory holding the built plugin binaries: CNI_PATH
// (the guest sets /opt/cni/bin), else bin/ at the module root.
func PluginDir(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CNI_PATH"); p != "" {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := vmtest.ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "bin")
}
