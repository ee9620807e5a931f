//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// masterName is the dummy master every container's ipvlan link hangs on.
const masterName = "bench0"

// env is what every implementation is measured in: a "host" namespace
// holding the master, where the plugins are started, and a pool of
// container namespaces. The pool is shared: every implementation leaves
// the namespaces it used as it found them (only lo), which the leak check
// asserts, so the next one can use them again.
type env struct {
	host   ns.NetNS
	hostH  *netlink.Handle // bound to host
	master netlink.Link
	pool   []ns.NetNS // closed after creation: used by path, kept alive by the bind mount
}

// newEnv creates the host namespace and the master in it:
// ip netns add <host>; ip -n <host> link add bench0 type dummy; ip -n <host> link set bench0 up.
func newEnv() (_ *env, err error) {
	e := &env{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.host, err = testutils.NewNS(); err != nil {
		return nil, fmt.Errorf("create host netns: %w", err)
	}
	if e.hostH, err = handleAt(e.host); err != nil {
		return nil, err
	}
	if err := linkUp(e.hostH, "lo"); err != nil {
		return nil, err
	}
	if err := e.hostH.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: masterName}}); err != nil {
		return nil, fmt.Errorf("ip link add %s type dummy: %w", masterName, err)
	}
	if err := linkUp(e.hostH, masterName); err != nil {
		return nil, err
	}
	if e.master, err = e.hostH.LinkByName(masterName); err != nil {
		return nil, fmt.Errorf("look up %s: %w", masterName, err)
	}
	return e, nil
}

// close removes the pool and the host namespace.
func (e *env) close() {
	for _, n := range e.pool {
		_ = testutils.UnmountNS(n)
	}
	e.pool = nil
	if e.hostH != nil {
		e.hostH.Close()
	}
	if e.host != nil {
		e.host.Close()
		_ = testutils.UnmountNS(e.host)
	}
}

// containers returns the first n namespaces of the pool, creating the
// missing ones with workers goroutines. A new namespace has only lo, down,
// as a runtime's would before the network is attached.
func (e *env) containers(n, workers int) ([]ns.NetNS, error) {
	missing := n - len(e.pool)
	if missing <= 0 {
		return e.pool[:n], nil
	}
	made := make([]ns.NetNS, missing)
	errs := make([]error, missing)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := testutils.NewNS()
				if err != nil {
					errs[i] = fmt.Errorf("create container netns: %w", err)
					continue
				}
				c.Close() // the bind mount keeps it; the plugins open it by path
				made[i] = c
			}
		}()
	}
	for i := range missing {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, c := range made {
		if c != nil {
			e.pool = append(e.pool, c)
		} else {
			return nil, errs[i]
		}
	}
	return e.pool[:n], nil
}

// leaks lists what the plugins left behind: a link other than lo in a
// container namespace, a link other than lo and the master in the host
// namespace, a lease file (named by an IP address) in dataDir.
func (e *env) leaks(containers []ns.NetNS, dataDir string) ([]string, error) {
	var found []string
	for _, c := range containers {
		names, err := linkNames(c.Path())
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if name != "lo" {
				found = append(found, fmt.Sprintf("link %s in container netns %s", name, filepath.Base(c.Path())))
			}
		}
	}
	names, err := linkNames(e.host.Path())
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if name != "lo" && name != masterName {
			found = append(found, fmt.Sprintf("link %s in the host netns", name))
		}
	}
	err = filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && net.ParseIP(d.Name()) != nil {
			found = append(found, "lease "+filepath.Base(filepath.Dir(path))+"/"+d.Name())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look for leases: %w", err)
	}
	return found, nil
}

// linkNames lists the links of the namespace at path: ip -n <ns> link show.
func linkNames(path string) ([]string, error) {
	n, err := ns.GetNS(path)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	h, err := handleAt(n)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("ip link show in %s: %w", path, err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

// handleAt opens a netlink handle bound to n.
func handleAt(n ns.NetNS) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Path(), err)
	}
	return h, nil
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("ip link set %s up: %w", name, err)
	}
	return nil
}

// raiseFileLimit lets the benchmark hold a descriptor per namespace and
// per worker without running into the default limit of 1024 or 4096.
func raiseFileLimit() error {
	lim := unix.Rlimit{Cur: 1 << 16, Max: 1 << 16}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open file limit: %w", err)
	}
	return nil
}

// neighStats sums the per-CPU counters of a kernel neighbour table
// (/proc/net/stat/arp_cache or ndisc_cache) and describes the ones that
// tell whether the table outgrew its gc_thresh limits. The file is read
// in the calling thread's network namespace, but the table and its
// counters are the whole kernel's.
func neighStats(table string) string {
	data, err := os.ReadFile(filepath.Join("/proc/net/stat", table))
	if err != nil {
		return fmt.Sprintf("%s: %v", table, err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	names := strings.Fields(lines[0])
	sums := make([]uint64, len(names))
	for i, line := range lines[1:] {
		for j, f := range strings.Fields(line) {
			v, err := strconv.ParseUint(f, 16, 64)
			if err != nil || j >= len(sums) {
				continue
			}
			if names[j] == "entries" {
				if i == 0 {
					sums[j] = v // the same global count on every line
				}
				continue
			}
			sums[j] += v
		}
	}
	var parts []string
	for j, n := range names {
		switch n {
		case "entries", "allocs", "forced_gc_runs", "table_fulls":
			parts = append(parts, fmt.Sprintf("%s %d", n, sums[j]))
		}
	}
	return table + ": " + strings.Join(parts, ", ")
}
