package runtimes

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// busyboxRef is the image every test container runs: the guest's static
// busybox, every applet linked, as a one-layer image.
const busyboxRef = "localhost/ipvlan-cni-test/busybox:1"

// The segment: the master seg0 in the host namespace, a veth whose other
// end is the peer, alone in namespace "peer" with an address in each
// test's subnet.
const (
	master   = "seg0"
	peerNS   = "peer"
	peerLink = "peer0"
)

// requireRuntime skips the test natively and, in the guest, fails it
// unless every binary is there.
func requireRuntime(t *testing.T, bins ...string) {
	t.Helper()
	testenv.RequireKernel(t)
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			if testenv.InVM() {
				t.Fatalf("%s is not in the guest (make vmtest-runtimes ships it): %v", b, err)
			}
			t.Skipf("needs %s (make vmtest-runtimes runs this in a VM)", b)
		}
	}
	// What a node's file system has and the initramfs lacks.
	if err := os.MkdirAll("/var/tmp", 0o1777); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/resolv.conf"); os.IsNotExist(err) {
		writeFile(t, "/etc/resolv.conf", "nameserver 127.0.0.1\n")
	}
}

// run runs a command and returns its standard output; a failure ends the
// test with the command's output.
func run(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	out, err := runErr(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// segment makes seg0 and the peer once per guest and gives the peer addr.
func segment(t *testing.T, ctx context.Context, addr netip.Prefix) {
	t.Helper()
	if _, err := netlink.LinkByName(master); err != nil {
		run(t, ctx, "ip", "netns", "add", peerNS)
		run(t, ctx, "ip", "link", "add", master, "type", "veth", "peer", "name", peerLink, "netns", peerNS)
		run(t, ctx, "ip", "link", "set", master, "up")
		run(t, ctx, "ip", "-n", peerNS, "link", "set", peerLink, "up")
		run(t, ctx, "ip", "-n", peerNS, "link", "set", "lo", "up")
	}
	run(t, ctx, "ip", "-n", peerNS, "addr", "add", addr.String(), "dev", peerLink)
}

// busyboxImage writes a docker-archive tarball of busyboxRef to path: the
// guest's /bin/busybox and a symbolic link per applet in /bin.
func busyboxImage(t *testing.T, path string) {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	write := func(h *tar.Header, body []byte) {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "run/"} {
		write(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}, nil)
	}
	write(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))}, bb)
	applets, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(applets)) {
		if a != "busybox" {
			write(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil)
		}
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\n")
	write(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd))}, passwd)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = []string{"/bin/sleep", "1000000"}
	cf.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(busyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
}

// handleIn is a netlink handle in the namespace at path; the caller
// closes it (an open handle keeps the namespace alive).
func handleIn(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	return nh
}

// ipvlanLinks lists the ipvlan links of the namespace at path.
func ipvlanLinks(t *testing.T, path string) []netlink.Link {
	t.Helper()
	nh := handleIn(t, path)
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Link
	for _, l := range links {
		if l.Type() == "ipvlan" {
			out = append(out, l)
		}
	}
	return out
}

// addrsOf lists the IPv4 addresses of link in the namespace at path.
func addrsOf(t *testing.T, path string, link netlink.Link) []netip.Prefix {
	t.Helper()
	nh := handleIn(t, path)
	defer nh.Close()
	addrs, err := nh.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out
}

// noIPVlanAnywhere fails the test for an ipvlan link in the host namespace
// or any namespace under /run/netns.
func noIPVlanAnywhere(t *testing.T) {
	t.Helper()
	paths, _ := filepath.Glob("/run/netns/*")
	paths = append(paths, "/proc/1/ns/net")
	for _, p := range paths {
		for _, l := range ipvlanLinks(t, p) {
			t.Errorf("ipvlan link %s is left in %s", l.Attrs().Name, p)
		}
	}
}

// leases maps each address host-local holds in dir to its owner's
// container ID.
func leases(t *testing.T, dir string) map[netip.Addr]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		id, _, _ := strings.Cut(string(b), "\r\n")
		out[ip] = id
	}
	return out
}

// writeJSON writes v as JSON to path, its directory made first.
func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 100 ms until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() error) error {
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
