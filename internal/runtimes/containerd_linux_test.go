package runtimes

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const containerdConfig = `version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "` + busyboxRef + `"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        NoPivotRoot = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`

// The pods' network, as a cluster's node would carry it in /etc/cni/net.d.
// containerd 1.6 reads configurations up to CNI 1.0.0.
const podNetwork = `{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [{
    "type": "ipvlan",
    "master": "seg0",
    "mode": "l2",
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "rangeEnd": "10.77.0.50"}]],
      "dataDir": "/var/lib/cni/networks"
    }
  }]
}`

const podLeases = "/var/lib/cni/networks/pods"

// crictl is built from tools/ by make vmtest-runtimes.
const crictl = "crictl"

// referenceLoopback is Debian's reference loopback plugin, which make
// vmtest-runtimes ships.
const referenceLoopback = "/usr/lib/cni/loopback"

var podPeer = netip.MustParsePrefix("10.77.0.2/24")

// TestContainerdCRI: containerd with its CRI plugin, driven by crictl as
// the kubelet would. The project's image, imported into containerd, runs
// its installer, which puts the plugins into /opt/cni/bin; then each pod
// sandbox gets an ipvlan interface with a leased address, reaches the peer
// from a container, and leaves no link and no lease once removed.
func TestContainerdCRI(t *testing.T) {
	requireRuntime(t, "containerd", "containerd-shim-runc-v2", "runc", "ctr", crictl)
	image := os.Getenv("IPVLAN_IMAGE")
	if image == "" {
		t.Fatal("IPVLAN_IMAGE names no archive: make vmtest-runtimes builds it with make image")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	segment(t, ctx, podPeer)

	// The node starts with an empty CNI bin directory: the installer fills it.
	if err := os.RemoveAll("/opt/cni/bin"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/opt/cni/bin", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, "/etc/containerd/config.toml", containerdConfig)
	writeFile(t, "/etc/cni/net.d/10-pods.conflist", podNetwork)
	writeFile(t, "/etc/crictl.yaml", "runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 120\n")
	startContainerd(t, ctx)
	t.Logf("containerd: %s", strings.TrimSpace(run(t, ctx, "containerd", "--version")))

	bb := filepath.Join(t.TempDir(), "busybox.tar")
	busyboxImage(t, bb)
	run(t, ctx, "ctr", "-n", "k8s.io", "images", "import", "--snapshotter", "native", bb)
	before := imageRefs(t, ctx)
	run(t, ctx, "ctr", "-n", "k8s.io", "images", "import", "--snapshotter", "native", image)
	var ours string
	for _, r := range imageRefs(t, ctx) {
		if !slices.Contains(before, r) && !strings.HasPrefix(r, "sha256:") {
			ours = r
		}
	}
	if ours == "" {
		t.Fatalf("importing %s added no named image", image)
	}

	// The installer, as the DaemonSet runs it: host network, /opt/cni/bin
	// mounted at /host/opt/cni/bin.
	install := func(id string) string {
		return run(t, ctx, "ctr", "-n", "k8s.io", "run", "--rm", "--snapshotter", "native", "--no-pivot", "--net-host",
			"--mount", "type=bind,src=/opt/cni/bin,dst=/host/opt/cni/bin,options=rbind:rw",
			ours, id, "/installer", "-once")
	}
	out := install("installer-1")
	t.Logf("installer:\n%s", out)
	for _, plugin := range []string{"ipvlan", "host-local"} {
		cmd := exec.CommandContext(ctx, filepath.Join("/opt/cni/bin", plugin))
		cmd.Env = []string{"CNI_COMMAND=VERSION"}
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
		v, err := cmd.Output()
		if err != nil || !strings.Contains(string(v), "supportedVersions") {
			t.Fatalf("the installed %s answers VERSION with %q, %v", plugin, v, err)
		}
	}
	if again := install("installer-2"); strings.Count(again, "unchanged") < 2 {
		t.Errorf("a second install should leave the plugins unchanged; it printed:\n%s", again)
	}
	// containerd's CRI brings every pod's lo up with the loopback plugin,
	// which nodes get from the reference plugins (Kubernetes' kubernetes-cni
	// package); the installer leaves other plugins alone.
	lo, err := os.ReadFile(referenceLoopback)
	if err != nil {
		t.Fatalf("the reference loopback plugin: %v", err)
	}
	if err := os.WriteFile("/opt/cni/bin/loopback", lo, 0o755); err != nil {
		t.Fatal(err)
	}

	// The CRI plugin reads /etc/cni/net.d; its network is ready once it has.
	if err := waitFor(ctx, "CRI network ready", func() error {
		info, err := runErr(ctx, crictl, "info")
		if err != nil {
			return err
		}
		if !strings.Contains(info, `"NetworkReady"`) || strings.Contains(info, "cni plugin not initialized") {
			return errNotReady(info)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	pod1 := runPod(t, ctx, "pod1")
	addr1 := checkPod(t, ctx, pod1)
	box := filepath.Join(t.TempDir(), "box.json")
	writeJSON(t, box, map[string]any{
		"metadata": map[string]any{"name": "box"},
		"image":    map[string]any{"image": busyboxRef},
		"command":  []string{"/bin/sleep", "1000000"},
		"log_path": "box.log",
		"linux":    map[string]any{},
	})
	ctr := strings.TrimSpace(run(t, ctx, crictl, "create", pod1.id, box, pod1.config))
	run(t, ctx, crictl, "start", ctr)
	if out, err := runErr(ctx, crictl, "exec", "-s", ctr, "ping", "-c", "1", "-W", "5", podPeer.Addr().String()); err != nil {
		t.Errorf("pod1's container does not reach the peer %s: %v", podPeer.Addr(), err)
	} else {
		t.Logf("pod1 -> peer: %s", strings.TrimSpace(out))
	}

	pod2 := runPod(t, ctx, "pod2")
	addr2 := checkPod(t, ctx, pod2)
	if addr1 == addr2 {
		t.Errorf("both pods got %v", addr1)
	}
	if got := leases(t, podLeases); len(got) != 2 || got[addr1.Addr()] != pod1.id || got[addr2.Addr()] != pod2.id {
		t.Errorf("leases = %v, want %v for %s and %v for %s", got, addr1.Addr(), pod1.id, addr2.Addr(), pod2.id)
	}

	for _, p := range []*pod{pod1, pod2} {
		run(t, ctx, crictl, "stopp", p.id)
		run(t, ctx, crictl, "rmp", p.id)
		if _, err := os.Stat(p.netns); err == nil {
			for _, l := range ipvlanLinks(t, p.netns) {
				t.Errorf("%s: ipvlan link %s is left after rmp", p.name, l.Attrs().Name)
			}
		}
	}
	if got := leases(t, podLeases); len(got) != 0 {
		t.Errorf("leases left after both pods were removed: %v", got)
	}
	noIPVlanAnywhere(t)
}

type pod struct {
	name, id, config, netns string
}

type errNotReady string

func (e errNotReady) Error() string { return "not ready: " + string(e)[:min(len(e), 400)] }

// runPod creates a pod sandbox with crictl runp.
func runPod(t *testing.T, ctx context.Context, name string) *pod {
	t.Helper()
	p := &pod{name: name, config: filepath.Join(t.TempDir(), name+".json")}
	writeJSON(t, p.config, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"log_directory": filepath.Join("/tmp/pods", name),
		"linux":         map[string]any{},
	})
	p.id = strings.TrimSpace(run(t, ctx, crictl, "runp", p.config))
	return p
}

// checkPod reads the sandbox back: its network namespace holds one ipvlan
// link, eth0, whose one address is the one CRI reports and the lease its
// sandbox holds; and containerd passed the pod's K8S_POD_* arguments.
func checkPod(t *testing.T, ctx context.Context, p *pod) netip.Prefix {
	t.Helper()
	name := p.name
	var inspect struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct {
						Type string `json:"type"`
						Path string `json:"path"`
					} `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(run(t, ctx, crictl, "inspectp", p.id)), &inspect); err != nil {
		t.Fatalf("crictl inspectp %s: %v", p.id, err)
	}
	for _, n := range inspect.Info.RuntimeSpec.Linux.Namespaces {
		if n.Type == "network" {
			p.netns = n.Path
		}
	}
	if p.netns == "" {
		t.Fatalf("%s: inspectp names no network namespace", name)
	}
	links := ipvlanLinks(t, p.netns)
	if len(links) != 1 || links[0].Attrs().Name != "eth0" {
		t.Fatalf("%s: ipvlan links in %s = %v, want eth0 alone", name, p.netns, links)
	}
	addrs := addrsOf(t, p.netns, links[0])
	if len(addrs) != 1 || !netip.MustParsePrefix("10.77.0.0/24").Contains(addrs[0].Addr()) || addrs[0].Bits() != 24 {
		t.Fatalf("%s: eth0 has %v, want one address in 10.77.0.0/24", name, addrs)
	}
	if inspect.Status.Network.IP != addrs[0].Addr().String() {
		t.Errorf("%s: CRI reports %q, eth0 has %v", name, inspect.Status.Network.IP, addrs[0])
	}
	if owner := leases(t, podLeases)[addrs[0].Addr()]; owner != p.id {
		t.Errorf("%s: the lease of %v is held by %q, want the sandbox %s", name, addrs[0].Addr(), owner, p.id)
	}
	// libcni's cache, written by containerd, records the arguments it
	// passed with the ADD that succeeded.
	cache, err := os.ReadFile(filepath.Join("/var/lib/cni/results", "pods-"+p.id+"-eth0"))
	if err != nil {
		t.Fatalf("%s: containerd's CNI cache: %v", name, err)
	}
	for _, arg := range []string{`"IgnoreUnknown","1"`, `"K8S_POD_NAME","` + name + `"`, `"K8S_POD_NAMESPACE","default"`, `"K8S_POD_INFRA_CONTAINER_ID","` + p.id + `"`} {
		if !strings.Contains(strings.ReplaceAll(string(cache), " ", ""), "["+arg+"]") {
			t.Errorf("%s: containerd's ADD did not pass %s: %s", name, arg, cache)
		}
	}
	return addrs[0]
}

// imageRefs lists the images in containerd's k8s.io namespace.
func imageRefs(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return strings.Fields(run(t, ctx, "ctr", "-n", "k8s.io", "images", "ls", "-q"))
}

// startContainerd runs containerd until the test ends, and waits until it
// answers.
func startContainerd(t *testing.T, ctx context.Context) {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", "/etc/containerd/config.toml")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// A containerd that does not stop on SIGINT must not hold the tier
		// until go test's timeout, which would end the guest without this
		// test's failure or containerd's log.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("containerd did not stop within 30 s of SIGINT: killed")
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("containerd's log:\n%s", b[max(0, len(b)-3000):])
		}
	})
	if err := waitFor(ctx, "containerd answers", func() error {
		_, err := runErr(ctx, "ctr", "version")
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
