package runtimes

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Podman with the CNI backend, its files where a node keeps them. The
// guest's root is the kernel's rootfs, hence no_pivot_root; vfs needs no
// overlay module.
const (
	podmanConf = `[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
no_pivot_root = true

[network]
network_backend = "cni"
cni_plugin_dirs = ["/opt/cni/bin"]
network_config_dir = "/etc/cni/podman.d"
`
	podmanStorage = `[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
`
	podmanPolicy = `{"default": [{"type": "insecureAcceptAnything"}]}`
)

var podmanPeer = netip.MustParsePrefix("10.78.0.2/24")

// TestPodman: podman network create -d ipvlan writes Podman's own
// configuration for the project's ipvlan and host-local; a container run
// on it gets an address on the segment and reaches the peer, and podman rm
// releases the lease and leaves no link.
func TestPodman(t *testing.T) {
	requireRuntime(t, "podman", "conmon", "crun")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	segment(t, ctx, podmanPeer)
	writeFile(t, "/etc/containers/containers.conf", podmanConf)
	writeFile(t, "/etc/containers/storage.conf", podmanStorage)
	writeFile(t, "/etc/containers/policy.json", podmanPolicy)
	writeFile(t, "/etc/containers/registries.conf", "unqualified-search-registries = []\n")
	if _, err := os.Stat("/etc/passwd"); os.IsNotExist(err) {
		writeFile(t, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
		writeFile(t, "/etc/group", "root:x:0:\n")
	}
	t.Logf("%s", strings.TrimSpace(run(t, ctx, "podman", "--version")))

	bb := filepath.Join(t.TempDir(), "busybox.tar")
	busyboxImage(t, bb)
	run(t, ctx, "podman", "load", "-q", "-i", bb)

	// Podman 4.3's CNI backend takes no parent for ipvlan: it writes
	// "master": "", and the plugin, as the reference does, enslaves the
	// interface of the host's default route: seg0 here.
	run(t, ctx, "ip", "route", "add", "default", "dev", master)
	t.Cleanup(func() { _, _ = runErr(context.Background(), "ip", "route", "del", "default", "dev", master) })
	run(t, ctx, "podman", "network", "create", "-d", "ipvlan", "--subnet", "10.78.0.0/24", "ipvnet")
	conf, err := os.ReadFile("/etc/cni/podman.d/ipvnet.conflist")
	if err != nil {
		t.Fatalf("podman wrote no configuration: %v", err)
	}
	t.Logf("podman's configuration:\n%s", conf)
	var list struct {
		Plugins []struct {
			Type   string `json:"type"`
			Master string `json:"master"`
			IPAM   struct {
				Type string `json:"type"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(conf, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Plugins) == 0 || list.Plugins[0].Type != "ipvlan" || list.Plugins[0].IPAM.Type != "host-local" {
		t.Fatalf("podman's configuration does not run ipvlan with host-local: %s", conf)
	}

	run(t, ctx, "podman", "run", "-d", "--name", "c1", "--network", "ipvnet", busyboxRef)
	var inspect []struct {
		NetworkSettings struct {
			SandboxKey string `json:"SandboxKey"`
			Networks   map[string]struct {
				IPAddress string `json:"IPAddress"`
			} `json:"Networks"`
		} `json:"NetworkSettings"`
	}
	if err := json.Unmarshal([]byte(run(t, ctx, "podman", "inspect", "c1")), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman inspect c1: %v", err)
	}
	nsPath := inspect[0].NetworkSettings.SandboxKey
	links := ipvlanLinks(t, nsPath)
	if len(links) != 1 || links[0].Attrs().Name != "eth0" {
		t.Fatalf("ipvlan links in c1's namespace %s = %v, want eth0 alone", nsPath, links)
	}
	addrs := addrsOf(t, nsPath, links[0])
	if len(addrs) != 1 || !netip.MustParsePrefix("10.78.0.0/24").Contains(addrs[0].Addr()) {
		t.Fatalf("c1's eth0 has %v, want one address in 10.78.0.0/24", addrs)
	}
	if got := inspect[0].NetworkSettings.Networks["ipvnet"].IPAddress; got != addrs[0].Addr().String() {
		t.Errorf("podman reports %q, eth0 has %v", got, addrs[0])
	}
	dir := "/var/lib/cni/networks/ipvnet"
	held := leases(t, dir)
	if len(held) != 1 || held[addrs[0].Addr()] == "" {
		t.Errorf("leases in %s = %v, want one, for %v", dir, held, addrs[0].Addr())
	}
	if out, err := runErr(ctx, "podman", "exec", "c1", "ping", "-c", "1", "-W", "5", podmanPeer.Addr().String()); err != nil {
		t.Errorf("c1 does not reach the peer %s: %v", podmanPeer.Addr(), err)
	} else {
		t.Logf("c1 -> peer: %s", strings.TrimSpace(out))
	}

	run(t, ctx, "podman", "rm", "-f", "-t", "0", "c1")
	if got := leases(t, dir); len(got) != 0 {
		t.Errorf("leases left after podman rm: %v", got)
	}
	noIPVlanAnywhere(t)
	run(t, ctx, "podman", "network", "rm", "ipvnet")
}
