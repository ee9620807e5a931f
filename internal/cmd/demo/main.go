// Command demo attaches two network namespaces to the README's example
// network (mynet: ipvlan on a dummy master, host-local in 10.1.2.0/24)
// through libcni with the project's own plugins, shows their addresses,
// pings one from the other, deletes both attachments and checks that no
// link and no lease is left.
//
// Everything happens in namespaces of its own: the master lives in a
// "host" namespace made for the demo, so the machine's interfaces are never
// touched. It needs root and a kernel with ipvlan; `make demo` runs it in
// the VM when this machine has neither (-probe tells which).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

const confTemplate = `{
  "cniVersion": "1.1.0",
  "name": "mynet",
  "plugins": [{
    "type": "ipvlan",
    "master": "demo0",
    "ipam": {
      "type": "host-local",
      "subnet": "10.1.2.0/24",
      "dataDir": %q
    }
  }]
}`

func main() {
	probe := flag.Bool("probe", false, "exit 0 if this machine can run the demo natively")
	flag.Parse()
	if *probe {
		if err := testenv.Probe(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("demo: OK")
}

// namespace is a network namespace made for the demo, removed at the end.
type namespace struct {
	ns.NetNS
	h *netlink.Handle
}

func newNamespace() (*namespace, error) {
	n, err := testutils.NewNS()
	if err != nil {
		return nil, fmt.Errorf("create netns: %w", err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	return &namespace{NetNS: n, h: h}, err
}

func (n *namespace) remove() {
	n.h.Close()
	n.Close()
	_ = testutils.UnmountNS(n)
}

func run(ctx context.Context) error {
	cniPath := os.Getenv("CNI_PATH")
	if cniPath == "" {
		return errors.New("CNI_PATH is not set: it must name the directory holding ipvlan and host-local")
	}
	dataDir, err := os.MkdirTemp("", "demo-ipam-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)

	host, err := newNamespace()
	if err != nil {
		return err
	}
	defer host.remove()
	if err := host.h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "demo0"}}); err != nil {
		return fmt.Errorf("ip link add demo0 type dummy: %w", err)
	}
	master, err := host.h.LinkByName("demo0")
	if err == nil {
		err = host.h.LinkSetUp(master)
	}
	if err != nil {
		return fmt.Errorf("set demo0 up: %w", err)
	}
	fmt.Printf("demo: master demo0 (dummy, MAC %s) in namespace %s\n", master.Attrs().HardwareAddr, filepath.Base(host.Path()))

	confJSON := fmt.Sprintf(confTemplate, dataDir)
	fmt.Printf("demo: network configuration:\n%s\n", confJSON)
	conf, err := libcni.ConfListFromBytes([]byte(confJSON))
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{cniPath}, filepath.Join(dataDir, "cache"), nil)

	var containers []*namespace
	var rts []*libcni.RuntimeConf
	var addrs []net.IP
	for _, id := range []string{"a", "b"} {
		c, err := newNamespace()
		if err != nil {
			return err
		}
		defer c.remove()
		rt := &libcni.RuntimeConf{ContainerID: "demo-" + id, NetNS: c.Path(), IfName: "eth0"}
		var res *current.Result
		// The plugin runs in the host namespace, as the runtime would start it.
		err = host.Do(func(ns.NetNS) error {
			r, err := cni.AddNetworkList(ctx, conf, rt)
			if err != nil {
				return err
			}
			res, err = current.NewResultFromResult(r)
			return err
		})
		if err != nil {
			return fmt.Errorf("ADD container %s: %w", id, err)
		}
		containers = append(containers, c)
		rts = append(rts, rt)
		ip, err := showInterface(c, id)
		if err != nil {
			return err
		}
		if len(res.IPs) == 0 || !res.IPs[0].Address.IP.Equal(ip) {
			return fmt.Errorf("container %s: the kernel has %s, the result says %v", id, ip, res.IPs)
		}
		addrs = append(addrs, ip)
	}

	fmt.Printf("demo: ping %s from container a\n", addrs[1])
	if err := ping(containers[0], addrs[1]); err != nil {
		return err
	}

	for i, rt := range rts {
		if err := host.Do(func(ns.NetNS) error { return cni.DelNetworkList(ctx, conf, rt) }); err != nil {
			return fmt.Errorf("DEL %s: %w", rt.ContainerID, err)
		}
		links, err := containers[i].h.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				return fmt.Errorf("after DEL, link %s is left in %s", l.Attrs().Name, rt.ContainerID)
			}
		}
	}
	leases, err := filepath.Glob(filepath.Join(dataDir, "mynet", "10.*"))
	if err != nil {
		return err
	}
	if len(leases) != 0 {
		return fmt.Errorf("after DEL, leases are left: %v", leases)
	}
	fmt.Println("demo: DEL done: no link and no lease left")
	return nil
}

// showInterface prints the container's eth0 as the kernel reports it and
// returns its IPv4 address.
func showInterface(c *namespace, id string) (net.IP, error) {
	l, err := c.h.LinkByName("eth0")
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	as, err := c.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(as) == 0 {
		return nil, fmt.Errorf("container %s: no IPv4 address on eth0: %v", id, err)
	}
	mode := "?"
	if iv, ok := l.(*netlink.IPVlan); ok {
		mode = map[netlink.IPVlanMode]string{netlink.IPVLAN_MODE_L2: "l2", netlink.IPVLAN_MODE_L3: "l3", netlink.IPVLAN_MODE_L3S: "l3s"}[iv.Mode]
	}
	fmt.Printf("demo: container %s: eth0 %s, ipvlan mode %s, MAC %s (the master's)\n", id, as[0].IPNet, mode, l.Attrs().HardwareAddr)
	return as[0].IP, nil
}

func ping(from *namespace, to net.IP) error {
	return from.Do(func(ns.NetNS) error {
		out, err := exec.Command("ping", "-c", "3", "-W", "2", to.String()).CombinedOutput()
		fmt.Print(indent(string(out)))
		if err != nil {
			return fmt.Errorf("ping %s: %w", to, err)
		}
		return nil
	})
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
