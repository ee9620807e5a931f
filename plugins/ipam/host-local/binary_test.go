package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

// binDir holds the host-local binary built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// binDirEnv passes binDir to a test binary run again by a test, which then
// does not build the plugin a second time.
const binDirEnv = "HOSTLOCAL_TEST_BIN_DIR"

func runTests(m *testing.M) int {
	if binDir = os.Getenv(binDirEnv); binDir != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "host-local-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Tests may run the plugin as another user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "host-local"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build host-local: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

// runPlugin executes the binary as a runtime would, with a deadline.
func runPlugin(ctx context.Context, command, id, stdin string) (stdout []byte, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "host-local"))
	cmd.Env = []string{
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=" + id,
		"CNI_NETNS=/dev/null",
		"CNI_IFNAME=eth0",
		"CNI_PATH=" + binDir,
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s%s", command, id, err, out.Bytes(), errOut.Bytes())
	}
	return out.Bytes(), nil
}

// leaseFiles lists the lease files of a network directory.
func leaseFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestConcurrentProcesses runs 64 plugin processes allocating from one pool
// at once, then 64 releasing.
func TestConcurrentProcesses(t *testing.T) {
	const n = 64
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	stdin := `{"cniVersion":"1.1.0","name":"pool","type":"host-local",` +
		`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","subnet":"10.20.0.0/24"}}`

	run := func(command string) [][]byte {
		outs := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { outs[i], errs[i] = runPlugin(ctx, command, fmt.Sprintf("ctr-%d", i), stdin) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		return outs
	}

	seen := map[string]string{}
	for i, out := range run("ADD") {
		var r current.Result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("ADD ctr-%d printed %q: %v", i, out, err)
		}
		if len(r.IPs) != 1 {
			t.Fatalf("ADD ctr-%d got %d addresses, want 1", i, len(r.IPs))
		}
		a := r.IPs[0].Address.IP.String()
		if prev, dup := seen[a]; dup {
			t.Errorf("%s handed to ctr-%d and %s", a, i, prev)
		}
		seen[a] = fmt.Sprintf("ctr-%d", i)
	}
	netDir := filepath.Join(dataDir, "pool")
	files := leaseFiles(t, netDir)
	if len(files) != n {
		t.Fatalf("%d lease files, want %d", len(files), n)
	}
	for _, f := range files {
		if _, ok := seen[f]; !ok {
			t.Errorf("lease file %s was not handed out", f)
		}
	}

	run("DEL")
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Errorf("lease files left after DEL: %v", files)
	}
	entries, err := os.ReadDir(indexOf(netDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "stamp" {
			t.Errorf("index entry left after DEL: %s", e.Name())
		}
	}
}

// TestThroughLibcni drives the binary with libcni, as a runtime does:
// ADD, CHECK, STATUS, GC and DEL, and VERSION.
func TestThroughLibcni(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.1.0","name":"lnet","plugins":[{"type":"host-local",` +
		`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","ranges":[[{"subnet":"10.30.0.0/30"}],[{"subnet":"fd30::/126"}]]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
	rt := &libcni.RuntimeConf{ContainerID: "lib-1", NetNS: "/dev/null", IfName: "eth0"}

	info, err := cni.GetVersionInfo(ctx, "host-local")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}, info.SupportedVersions()); diff != "" {
		t.Errorf("supported versions (-want +got):\n%s", diff)
	}

	res, err := cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ipc := range r.IPs {
		got = append(got, ipc.Address.String())
	}
	if diff := cmp.Diff([]string{"10.30.0.2/30", "fd30::2/126"}, got); diff != "" {
		t.Errorf("ADD addresses (-want +got):\n%s", diff)
	}
	if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}

	// The /30 has one usable address, now taken: STATUS says so.
	err = cni.GetStatusNetworkList(ctx, list)
	var e *types.Error
	if !errors.As(err, &e) || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, "range set 0 (10.30.0.1-10.30.0.2)") {
		t.Errorf("STATUS of a full range set = %v, want code 50 naming range set 0", err)
	}
	// A second container cannot get an address: code 11, naming the set.
	_, err = cni.AddNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: "lib-2", NetNS: "/dev/null", IfName: "eth0"})
	if !errors.As(err, &e) || e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, "range set 0") {
		t.Errorf("ADD on a full pool = %v, want code 11 naming range set 0", err)
	}

	// GC with lib-1 still valid keeps its leases.
	if err := cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "lib-1", IfName: "eth0"}}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	netDir := filepath.Join(dataDir, "lnet")
	files := leaseFiles(t, netDir)
	sort.Strings(files)
	if diff := cmp.Diff([]string{"10.30.0.2", "fd30::2"}, files); diff != "" {
		t.Errorf("leases after GC keeping lib-1 (-want +got):\n%s", diff)
	}
	// GC with nothing valid releases them.
	if err := cni.GCNetworkList(ctx, list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Errorf("leases after GC of everything: %v", files)
	}
	if err := cni.GetStatusNetworkList(ctx, list); err != nil {
		t.Errorf("STATUS with free addresses: %v", err)
	}
	// DEL of an attachment with nothing left is success.
	if err := cni.DelNetworkList(ctx, list, rt); err != nil {
		t.Errorf("DEL: %v", err)
	}
}

// TestGCReleasesOrphans has the plugin release a lease that the runtime
// has no record of.
func TestGCReleasesOrphans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	conf := func(extra string) string {
		return `{"cniVersion":"1.1.0","name":"gnet","type":"host-local",` + extra +
			`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","subnet":"10.40.0.0/24"}}`
	}
	for _, id := range []string{"live", "orphan"} {
		if _, err := runPlugin(ctx, "ADD", id, conf("")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runPlugin(ctx, "GC", "", conf(`"cni.dev/valid-attachments":[{"containerID":"live","ifname":"eth0"}],`)); err != nil {
		t.Fatal(err)
	}
	files := leaseFiles(t, filepath.Join(dataDir, "gnet"))
	if diff := cmp.Diff([]string{"10.40.0.2"}, files); diff != "" {
		t.Errorf("leases after GC (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(filepath.Join(dataDir, "gnet", "10.40.0.2"))
	if err != nil || string(data) != "live\r\neth0" {
		t.Errorf("remaining lease = %q, %v; want live's", data, err)
	}
}
