package etcdstore

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/etcdtest"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
)

func TestAddrKeySortsAsAddresses(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("10.0.0.100"), netip.MustParseAddr("9.255.255.255"),
		netip.MustParseAddr("fd00::a"), netip.MustParseAddr("fd00::1:0"), netip.MustParseAddr("fd00::9")}
	byKey := slices.Clone(addrs)
	slices.SortFunc(byKey, func(a, b netip.Addr) int {
		if a.Is4() != b.Is4() {
			return a.Compare(b)
		}
		ka, kb := addrKey(a), addrKey(b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	byAddr := slices.Clone(addrs)
	slices.SortFunc(byAddr, netip.Addr.Compare)
	if diff := cmp.Diff(byAddr, byKey, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("key order differs from address order (-addr +key):\n%s", diff)
	}
	for _, a := range addrs {
		if b, err := parseAddrKey(addrKey(a)); err != nil || b != a {
			t.Errorf("parseAddrKey(addrKey(%s)) = %s, %v", a, b, err)
		}
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	etcdtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := etcdtest.Start(ctx, t.TempDir(), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := New(Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Prefix: "/test/", Network: "net"})
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCommit: the first attempt whose conditions hold is written, in one
// transaction with its block claim; a second commit for an attachment
// that holds an address writes nothing, even from a stale read.
func TestCommit(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	now := time.Now()
	ip := netip.MustParseAddr
	b := netip.MustParsePrefix("10.0.0.0/26")
	x := store.Attachment{ContainerID: "x", IfName: "eth0"}
	y := store.Attachment{ContainerID: "y", IfName: "eth0"}

	i, err := s.Commit(ctx, "a", x, now, []store.Attempt{{{IP: ip("10.0.0.5"), Claim: b}}})
	if err != nil || i != 0 {
		t.Fatalf("Commit claiming %s: %d, %v", b, i, err)
	}
	attempts := []store.Attempt{
		{{IP: ip("10.0.0.5")}},           // taken
		{{IP: ip("10.0.0.6"), Claim: b}}, // block claimed
		{{IP: ip("10.0.0.7"), Mine: netip.MustParsePrefix("10.0.0.64/26")}}, // not a's block
		{{IP: ip("10.0.0.8"), Mine: b}},
	}
	if i, err := s.Commit(ctx, "a", y, now, attempts); err != nil || i != 3 {
		t.Errorf("Commit: attempt %d, %v; want 3, the first that holds", i, err)
	}
	if i, err := s.Commit(ctx, "a", y, now, []store.Attempt{{{IP: ip("10.0.0.9")}}}); err != nil || i != -1 {
		t.Errorf("second Commit for y: attempt %d, %v; want -1: y holds 10.0.0.8", i, err)
	}
	used, err := s.Used(ctx, []store.Span{{First: ip("10.0.0.0"), Last: ip("10.0.0.63")}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10.0.0.5", "10.0.0.8"}, strs(used)); diff != "" {
		t.Errorf("Used (-want +got):\n%s", diff)
	}
	var many []netip.Prefix // more than one transaction's worth of reads
	for i := range 70 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i / 4), byte(i % 4 * 64)}), 26))
	}
	claimed, err := s.Claimed(ctx, many)
	if err != nil || len(claimed) != len(many) || !claimed[0] || slices.Contains(claimed[1:], true) {
		t.Errorf("Claimed: %v, %v; want %s alone claimed", claimed, err, b)
	}
	v, err := s.View(ctx, "a", y)
	if err != nil || len(v.Held) != 1 || v.Held[0] != ip("10.0.0.8") || len(v.Blocks) != 1 || v.Blocks[0] != b || len(v.Used) != 2 {
		t.Errorf("View: %+v %v", v, err)
	}

	released, err := s.Release(ctx, "a", y)
	if err != nil || len(released) != 1 {
		t.Fatalf("Release: %v %v", released, err)
	}
	if released, err := s.Release(ctx, "a", y); err != nil || len(released) != 0 {
		t.Errorf("second Release: %v %v", released, err)
	}
	if allocs, err := s.Allocations(ctx, ""); err != nil || len(allocs) != 1 || allocs[0].Owner != x {
		t.Errorf("Allocations after release: %v %v", allocs, err)
	}
	if freed, err := s.ReleaseBlocks(ctx, "a"); err != nil || len(freed) != 1 {
		t.Errorf("ReleaseBlocks: %v %v", freed, err)
	}
	if bl, err := s.Blocks(ctx); err != nil || len(bl) != 0 {
		t.Errorf("Blocks after ReleaseBlocks: %v %v", bl, err)
	}
}

func strs(a []netip.Addr) []string {
	var out []string
	for _, x := range a {
		out = append(out, x.String())
	}
	return out
}
