//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/etcdtest"
)

// TestIntegrationClusterIPAM attaches containers of two nodes through
// libcni, the ipvlan plugin running cluster-ipam from CNI_PATH against a
// real etcd in the guest: distinct addresses on the interfaces, recorded
// in etcd, and nothing but the blocks left after DEL.
//
// etcd listens on the loopback of the test's own namespace, so the
// plugins run there too (not in a fixture's host namespace), with a dummy
// master of the test's.
func TestIntegrationClusterIPAM(t *testing.T) {
	etcdtest.Require(t)
	testenv.RequireKernel(t)
	f := &netFixture{t: t, cni: libcniWithCache(t), dataDir: t.TempDir()}
	var err error
	if f.host, err = ns.GetCurrentNS(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.host.Close() })
	f.hostH = testenv.Handle(t, f.host)
	if err := f.hostH.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: testMaster}}); err != nil {
		t.Fatalf("ip link add %s type dummy: %v", testMaster, err)
	}
	t.Cleanup(func() {
		if l, err := f.hostH.LinkByName(testMaster); err == nil {
			_ = f.hostH.LinkDel(l)
		}
	})
	if f.master, err = f.hostH.LinkByName(testMaster); err != nil {
		t.Fatal(err)
	}
	if err := f.hostH.LinkSetUp(f.master); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cluster, err := etcdtest.Start(ctx, t.TempDir(), 1, nil)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(cluster.Close)
	cli, err := cluster.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	list := func(node string) *libcni.NetworkConfigList {
		return f.list("1.1.0", f.plugin(map[string]any{"ipam": map[string]any{
			"type":   "cluster-ipam",
			"subnet": "10.30.0.0/24",
			"node":   node,
			"etcd":   map[string]any{"endpoints": cluster.Endpoints()},
		}}))
	}
	type attached struct {
		c    *testContainer
		node string
		ip   string
	}
	var all []attached
	for i, node := range []string{"node-a", "node-a", "node-b", "node-b"} {
		c := f.newContainer(fmt.Sprintf("cluster-%d", i))
		res := f.mustAdd(list(node), c.rt())
		if len(res.IPs) != 1 {
			t.Fatalf("ADD %s: %d addresses, want 1", c.id, len(res.IPs))
		}
		all = append(all, attached{c, node, res.IPs[0].Address.IP.String()})
	}
	seen := map[string]bool{}
	for _, a := range all {
		if seen[a.ip] {
			t.Errorf("%s got %s, which another container holds", a.c.id, a.ip)
		}
		seen[a.ip] = true
		if got := globalAddrsOf(t, a.c.h, a.c.link(t, testIf)); len(got) != 1 || got[0] != a.ip+"/24" {
			t.Errorf("%s's %s has %v, want %s/24", a.c.id, testIf, got, a.ip)
		}
	}
	if n := etcdKeys(t, ctx, cli, "/ips/"); n != len(all) {
		t.Errorf("etcd holds %d allocations, want %d", n, len(all))
	}
	for _, a := range all {
		if err := f.del(list(a.node), a.c.rt()); err != nil {
			t.Errorf("DEL %s: %v", a.c.id, err)
		}
		f.requireNothingLeft(a.c)
	}
	if n := etcdKeys(t, ctx, cli, "/ips/"); n != 0 {
		t.Errorf("etcd holds %d allocations after every DEL, want none", n)
	}
	if n := etcdKeys(t, ctx, cli, "/owners/"); n != 0 {
		t.Errorf("etcd holds %d owner keys after every DEL, want none", n)
	}
	if n := etcdKeys(t, ctx, cli, "/blocks/"); n == 0 {
		t.Errorf("etcd holds no block claim: the test read the wrong keys")
	}
}

// etcdKeys counts the keys of the test network whose path holds part.
func etcdKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, part string) int {
	t.Helper()
	resp, err := cli.Get(ctx, "/cluster-ipam/"+testNet+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("read etcd: %v", err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		if strings.Contains(strings.TrimPrefix(string(kv.Key), "/cluster-ipam/"+testNet), part) {
			n++
		}
	}
	return n
}
