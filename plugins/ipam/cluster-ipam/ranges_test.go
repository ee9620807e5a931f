package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

// TestExhaustion: a range of four addresses gives four, then code 11
// naming the range, on this node and another, writing nothing.
func TestExhaustion(t *testing.T) {
	c := startCluster(t, nil)
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ipam := map[string]any{"subnet": "10.30.0.0/24", "rangeStart": "10.30.0.10", "rangeEnd": "10.30.0.13", "blockSize": 30}
	confA := netConf("full", c.Endpoints(), ipam)
	ipam["node"] = "node-b"
	confB := netConf("full", c.Endpoints(), ipam)
	var got []string
	for i := range 4 {
		ips, err := add(ctx, call{ID: fmt.Sprintf("ctr-%d", i), Stdin: confA})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ips[0].String())
	}
	if diff := cmp.Diff([]string{"10.30.0.10", "10.30.0.11", "10.30.0.12", "10.30.0.13"}, sorted(got)); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	before := dump(t, cli, prefix)
	for _, conf := range []string{confA, confB} {
		_, err := add(ctx, call{ID: "one-too-many", Stdin: conf})
		if code(err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "10.30.0.10-10.30.0.13") {
			t.Errorf("ADD on a full range: %v, want code 11 naming 10.30.0.10-10.30.0.13", err)
		}
	}
	if diff := cmp.Diff(before, dump(t, cli, prefix)); diff != "" {
		t.Errorf("the failed ADDs wrote (-before +after):\n%s", diff)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			a, _ := netip.ParseAddr(out[i])
			b, _ := netip.ParseAddr(out[j])
			if b.Less(a) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestBorrowing: when a node's blocks are full and no block is free, it
// allocates a free address inside another node's block, recorded as its
// own, until the range is exhausted.
func TestBorrowing(t *testing.T) {
	c := startCluster(t, nil)
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Two blocks: 10.40.0.0/29 (.2-.7 usable, .1 the gateway) and
	// 10.40.0.8/29 (.8-.14, .15 the broadcast address).
	ipam := map[string]any{"subnet": "10.40.0.0/28", "blockSize": 29}
	confA := netConf("borrow", c.Endpoints(), ipam)
	ipam["node"] = "node-b"
	confB := netConf("borrow", c.Endpoints(), ipam)

	if _, err := add(ctx, call{ID: "a-0", Stdin: confA}); err != nil {
		t.Fatal(err)
	}
	if _, err := add(ctx, call{ID: "b-0", Stdin: confB}); err != nil {
		t.Fatal(err)
	}
	s := readState(t, dump(t, cli, prefix), prefix, "borrow")
	// Each node claimed one of the two blocks (which one is hashed from
	// its name).
	lo, hi := netip.MustParsePrefix("10.40.0.0/29"), netip.MustParsePrefix("10.40.0.8/29")
	blockA, blockB := lo, hi
	if s.blocks[lo] == "node-b" {
		blockA, blockB = hi, lo
	}
	wantBlocks := map[netip.Prefix]string{blockA: "node-a", blockB: "node-b"}
	if diff := cmp.Diff(wantBlocks, s.blocks); diff != "" {
		t.Fatalf("blocks (-want +got):\n%s", diff)
	}
	// node-a fills its own block (.2-.7 of the low one, .8-.14 of the
	// high one), then borrows the free addresses of node-b's.
	own := 6
	if blockA == hi {
		own = 7
	}
	for i := 1; i < 12; i++ {
		id := fmt.Sprintf("a-%d", i)
		ips, err := add(ctx, call{ID: id, Stdin: confA})
		if err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
		inB := blockB.Contains(ips[0])
		if inB != (i >= own) {
			t.Errorf("ADD %s got %s: in node-b's block %v, want %v", id, ips[0], inB, i >= own)
		}
	}
	s = readState(t, dump(t, cli, prefix), prefix, "borrow")
	if len(s.ips) != 13 {
		t.Errorf("etcd holds %d addresses, want all 13", len(s.ips))
	}
	for a, o := range s.ips {
		if _, node, _ := s.blockOf(a); node == "node-b" && o != "node-b/b-0/eth0" && !strings.HasPrefix(o, "node-a/") {
			t.Errorf("%s in node-b's block is recorded for %s", a, o)
		}
	}
	if diff := cmp.Diff(wantBlocks, s.blocks); diff != "" {
		t.Errorf("borrowing changed the blocks (-want +got):\n%s", diff)
	}
	if _, err := add(ctx, call{ID: "b-1", Stdin: confB}); code(err) != types.ErrTryAgainLater {
		t.Errorf("ADD on the exhausted range: %v, want code 11", err)
	}
}

// TestReleaseNode: release-node refuses a node that allocated within
// --grace, changing nothing; with --force it frees that node's blocks and
// allocations and nothing of another node's. show lists blocks per node,
// allocations and free addresses.
func TestReleaseNode(t *testing.T) {
	c := startCluster(t, nil)
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	confA := netConf("rel", c.Endpoints(), map[string]any{"subnet": "10.50.0.0/24"})
	confB := netConf("rel", c.Endpoints(), map[string]any{"subnet": "10.50.0.0/24", "node": "node-b"})
	for i := range 3 {
		if _, err := add(ctx, call{ID: fmt.Sprintf("a-%d", i), Stdin: confA}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := add(ctx, call{ID: "b-0", Stdin: confB}); err != nil {
		t.Fatal(err)
	}
	// The operator's file is a conflist, as a runtime's directory holds.
	var plugin map[string]any
	if err := json.Unmarshal([]byte(confA), &plugin); err != nil {
		t.Fatal(err)
	}
	delete(plugin, "name")
	delete(plugin, "cniVersion")
	list, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "rel", "plugins": []any{plugin}})
	file := filepath.Join(t.TempDir(), "rel.conflist")
	if err := os.WriteFile(file, list, 0o644); err != nil {
		t.Fatal(err)
	}

	// Each node holds one block; which one is hashed from its name.
	blockOf := map[string]netip.Prefix{}
	for b, node := range readState(t, dump(t, cli, prefix), prefix, "rel").blocks {
		blockOf[node] = b
	}
	if len(blockOf) != 2 || blockOf["node-a"] == blockOf["node-b"] {
		t.Fatalf("blocks per node: %v, want one each", blockOf)
	}
	out, exit := cliRun(t, "show", "--config", file)
	if exit != 0 {
		t.Fatalf("show: exit %d: %s", exit, out)
	}
	for _, want := range []string{"10.50.0.1-10.50.0.254  253        4          249", "node-a  " + blockOf["node-a"].String(), "node-b  " + blockOf["node-b"].String(), "a-2", "b-0"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}

	before := dump(t, cli, prefix)
	out, exit = cliRun(t, "release-node", "--config", file, "node-a")
	if exit != 1 || !strings.Contains(out, "within the last 10m0s") {
		t.Errorf("release-node of a node that just allocated: exit %d, %s; want exit 1 naming the grace", exit, out)
	}
	if diff := cmp.Diff(before, dump(t, cli, prefix)); diff != "" {
		t.Errorf("the refused release-node changed (-before +after):\n%s", diff)
	}

	out, exit = cliRun(t, "release-node", "--config", file, "--force", "node-a")
	if exit != 0 || !strings.Contains(out, "released 3 addresses of 3 attachments and 1 blocks") {
		t.Errorf("release-node --force: exit %d, %s", exit, out)
	}
	s := readState(t, dump(t, cli, prefix), prefix, "rel")
	want := state{
		ips:    map[netip.Addr]string{netip.MustParseAddr(firstIP(t, before, "node-b/b-0/eth0")): "node-b/b-0/eth0"},
		blocks: map[netip.Prefix]string{blockOf["node-b"]: "node-b"},
	}
	if diff := cmp.Diff(want, s, cmp.AllowUnexported(state{})); diff != "" {
		t.Errorf("after release-node (-want +got):\n%s", diff)
	}
	for k := range dump(t, cli, prefix) {
		if strings.Contains(k, "node-a") {
			t.Errorf("key %s of node-a is left", k)
		}
	}
	out, exit = cliRun(t, "release-node", "--config", file, "--grace", "0", "node-c")
	if exit != 0 || !strings.Contains(out, "holds no block and no allocation") {
		t.Errorf("release-node of an unknown node: exit %d, %s", exit, out)
	}
}

// firstIP returns the address etcd records for owner in kv.
func firstIP(t *testing.T, kv map[string]string, owner string) string {
	t.Helper()
	for k := range kv {
		if rest, ok := strings.CutPrefix(k, prefix+"rel/owners/"+owner+"/"); ok {
			return rest
		}
	}
	t.Fatalf("no address of %s", owner)
	return ""
}
