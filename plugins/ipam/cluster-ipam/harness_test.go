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
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/etcdtest"
)

// binDir holds the cluster-ipam binary built by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cluster-ipam-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "cluster-ipam"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build cluster-ipam: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

// startCluster starts a 3-member etcd cluster for the test, stopped in
// t.Cleanup. Without etcd the test fails under CI and skips elsewhere.
func startCluster(t *testing.T, tlsConf *etcdtest.TLS) *etcdtest.Cluster {
	t.Helper()
	etcdtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := etcdtest.Start(ctx, t.TempDir(), 3, tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// client returns a client of the cluster's running members, closed in
// t.Cleanup.
func client(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := c.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// dump returns every key under prefix and its value.
func dump(t *testing.T, cli *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// netConf returns a network config with ipam fields over defaults:
// subnet 10.10.0.0/22 and the cluster's endpoints, with a dialTimeout
// (the bound of a whole verb) of 20 s: 192 plugin processes at once on
// a shared two-core machine take seconds each, and these tests are about
// what is allocated, not how fast. The tests of deadlines set their own.
func netConf(name string, endpoints []string, ipam map[string]any) string {
	conf := map[string]any{
		"type":   "cluster-ipam",
		"subnet": "10.10.0.0/22",
		"etcd":   map[string]any{"endpoints": endpoints, "dialTimeout": 20},
		"routes": []any{map[string]any{"dst": "0.0.0.0/0"}},
		"node":   "node-a",
	}
	for k, v := range ipam {
		if v == nil {
			delete(conf, k)
		} else {
			conf[k] = v
		}
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": name, "type": "ipvlan", "ipam": conf})
	return string(b)
}

// call is one plugin execution.
type call struct {
	Command, ID, IfName, Args, Stdin string
}

// run executes the binary as a runtime would and returns its stdout; a
// failure is a *types.Error when the plugin printed one.
func run(ctx context.Context, c call) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "cluster-ipam"))
	ifname := c.IfName
	if ifname == "" {
		ifname = "eth0"
	}
	cmd.Env = []string{
		"CNI_COMMAND=" + c.Command,
		"CNI_CONTAINERID=" + c.ID,
		"CNI_NETNS=/dev/null",
		"CNI_IFNAME=" + ifname,
		"CNI_PATH=" + binDir,
		"CNI_ARGS=" + c.Args,
	}
	cmd.Stdin = strings.NewReader(c.Stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var te types.Error
		if json.Unmarshal(out.Bytes(), &te) == nil && te.Code != 0 {
			return out.Bytes(), &te
		}
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s%s", c.Command, c.ID, err, out.Bytes(), errOut.Bytes())
	}
	return out.Bytes(), nil
}

// add runs ADD and returns the addresses of its result.
func add(ctx context.Context, c call) ([]netip.Addr, error) {
	c.Command = "ADD"
	out, err := run(ctx, c)
	if err != nil {
		return nil, err
	}
	var r current.Result
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("ADD %s printed %q: %w", c.ID, out, err)
	}
	var ips []netip.Addr
	for _, ipc := range r.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		ips = append(ips, a.Unmap())
	}
	return ips, nil
}

// code returns the CNI error code of err, 0 for none or another error.
func code(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// cliRun runs the operator command line and returns its output and exit
// code.
func cliRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "cluster-ipam"), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}
