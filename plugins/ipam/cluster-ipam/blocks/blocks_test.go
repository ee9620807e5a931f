package blocks

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
)

func rangeOf(t *testing.T, subnet, start, end string) allocator.Range {
	t.Helper()
	p := netip.MustParsePrefix(subnet)
	r := allocator.Range{Subnet: p, RangeStart: allocator.FirstHost(p), RangeEnd: allocator.DefaultRangeEnd(p), Gateway: allocator.FirstHost(p)}
	if start != "" {
		r.RangeStart = netip.MustParseAddr(start)
	}
	if end != "" {
		r.RangeEnd = netip.MustParseAddr(end)
	}
	return r
}

func TestBlocksOf(t *testing.T) {
	for _, tc := range []struct {
		r    allocator.Range
		bits int
		want []string
	}{
		{rangeOf(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.70"), 26, []string{"10.0.0.0/26", "10.0.0.64/26"}},
		{rangeOf(t, "10.0.0.0/24", "", ""), 25, []string{"10.0.0.0/25", "10.0.0.128/25"}},
		{rangeOf(t, "10.0.0.0/30", "", ""), 30, []string{"10.0.0.0/30"}},
		{rangeOf(t, "fd00::/120", "fd00::f0", ""), 122, []string{"fd00::c0/122"}},
		{rangeOf(t, "255.255.255.0/24", "", ""), 26, []string{"255.255.255.0/26", "255.255.255.64/26", "255.255.255.128/26", "255.255.255.192/26"}},
	} {
		var got []string
		for b := range BlocksOf(tc.r, tc.bits) {
			got = append(got, b.String())
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("BlocksOf(%s, /%d) (-want +got):\n%s", tc.r, tc.bits, diff)
		}
	}
}

func newAllocator(st store.Store, node string, bits int, sets ...allocator.RangeSet) *Allocator {
	bb := make([]int, len(sets))
	for i := range bb {
		bb[i] = bits
		if sets[i][0].Subnet.Addr().Is6() {
			bb[i] = bits + 96
		}
	}
	return &Allocator{Store: st, Sets: sets, BlockBits: bb, Node: node, Now: time.Now}
}

func owner(i int) store.Attachment {
	return store.Attachment{ContainerID: fmt.Sprintf("ctr-%d", i), IfName: "eth0"}
}

// TestOneCommitPerAllocation: sequential allocations of two nodes take
// one write transaction each, block claims included, and stay in their
// node's blocks until the blocks run out.
func TestOneCommitPerAllocation(t *testing.T) {
	ctx := context.Background()
	st := &store.Fake{}
	set := allocator.RangeSet{rangeOf(t, "10.0.0.0/24", "", "")}
	a, b := newAllocator(st, "a", 27, set), newAllocator(st, "b", 27, set)
	for i := range 100 {
		for _, al := range []*Allocator{a, b} {
			got, err := al.Allocate(ctx, owner(i), nil)
			if err != nil {
				t.Fatalf("%s %d: %v", al.Node, i, err)
			}
			blocks, _ := st.NodeBlocks(ctx, al.Node)
			if !slices.ContainsFunc(blocks, func(p netip.Prefix) bool { return p.Contains(got[0].IP) }) {
				t.Errorf("%s %d got %s outside its blocks %v", al.Node, i, got[0].IP, blocks)
			}
		}
	}
	if st.Commits != 200 {
		t.Errorf("200 allocations took %d commits, want 200", st.Commits)
	}
}

func TestBorrowAndExhaust(t *testing.T) {
	ctx := context.Background()
	st := &store.Fake{}
	set := allocator.RangeSet{rangeOf(t, "10.0.0.0/28", "", "")} // .1 gateway, .2-.14
	a, b := newAllocator(st, "a", 29, set), newAllocator(st, "b", 29, set)
	if _, err := a.Allocate(ctx, owner(0), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Allocate(ctx, owner(100), nil); err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for i := 1; i < 12; i++ {
		al, err := a.Allocate(ctx, owner(i), nil)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		got = append(got, al[0].IP)
	}
	borrowed := 0
	for _, ip := range got {
		if netip.MustParsePrefix("10.0.0.8/29").Contains(ip) {
			borrowed++
		}
	}
	if borrowed != 6 {
		t.Errorf("a borrowed %d addresses of b's block, want its 6 free ones: %v", borrowed, got)
	}
	_, err := b.Allocate(ctx, owner(101), nil)
	var ex *allocator.ExhaustedError
	if !errors.As(err, &ex) || !strings.Contains(err.Error(), "10.0.0.1-10.0.0.14") {
		t.Errorf("allocation on a full range: %v, want ExhaustedError naming it", err)
	}
}

func TestRetriedAllocation(t *testing.T) {
	ctx := context.Background()
	st := &store.Fake{}
	v4 := allocator.RangeSet{rangeOf(t, "10.0.0.0/24", "", "")}
	v6 := allocator.RangeSet{rangeOf(t, "fd00::/64", "", "")}
	a := newAllocator(st, "a", 26, v4, v6)
	first, err := a.Allocate(ctx, owner(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.Allocate(ctx, owner(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("retried allocation (-first +again):\n%s", diff)
	}
	if st.Commits != 1 {
		t.Errorf("the retry wrote: %d commits", st.Commits)
	}
	_, err = a.Allocate(ctx, owner(1), map[int]netip.Addr{0: netip.MustParseAddr("10.0.0.99")})
	var du *allocator.DuplicateError
	if !errors.As(err, &du) {
		t.Errorf("retried allocation asking another address: %v, want DuplicateError", err)
	}
	_, err = a.Allocate(ctx, owner(2), map[int]netip.Addr{0: first[0].IP})
	var tk *allocator.TakenError
	if !errors.As(err, &tk) {
		t.Errorf("allocation asking a taken address: %v, want TakenError", err)
	}
}

func TestCombineClaimsSharedBlockOnce(t *testing.T) {
	b := netip.MustParsePrefix("10.0.0.0/26")
	got := combine([][]store.Pick{
		{{IP: netip.MustParseAddr("10.0.0.5"), Claim: b}},
		{{IP: netip.MustParseAddr("10.0.0.40"), Claim: b}},
	})
	want := []store.Attempt{{{IP: netip.MustParseAddr("10.0.0.5"), Claim: b}, {IP: netip.MustParseAddr("10.0.0.40")}}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("combine (-want +got):\n%s", diff)
	}
}

// TestScatter: an attachment's order visits distinct addresses, all of
// them when asked, and two attachments' orders differ.
func TestScatter(t *testing.T) {
	var addrs []netip.Addr
	a := netip.MustParseAddr("10.0.0.0")
	for range 62 {
		a = a.Next()
		addrs = append(addrs, a)
	}
	for _, n := range []int{1, 2, 3, 62} {
		got := scatter(addrs[:n], owner(1), 100)
		seen := map[netip.Addr]bool{}
		for _, ip := range got {
			seen[ip] = true
		}
		if len(got) != n || len(seen) != n {
			t.Errorf("scatter of %d addresses: %v, want each once", n, got)
		}
	}
	x, y := scatter(addrs, owner(1), 8), scatter(addrs, owner(2), 8)
	shared := 0
	for _, ip := range x {
		if slices.Contains(y, ip) {
			shared++
		}
	}
	if shared > 2 {
		t.Errorf("two attachments share %d of their 8 first picks: %v, %v", shared, x, y)
	}
}

// TestClaimsSpreadOverNodes: nodes claiming at once try different blocks
// of the range; one node's calls try the same ones.
func TestClaimsSpreadOverNodes(t *testing.T) {
	set := allocator.RangeSet{rangeOf(t, "10.0.0.0/16", "", "")}
	first := map[netip.Prefix]int{}
	for i := range 10 {
		al := newAllocator(&store.Fake{}, fmt.Sprintf("node-%d", i), 26, set)
		p, err := al.claimPicks(context.Background(), owner(1), 0)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := al.claimPicks(context.Background(), owner(2), 0)
		if len(p) == 0 || !p[0].Claim.IsValid() || p[0].Claim != q[0].Claim {
			t.Fatalf("node-%d: claims %v and %v, want the same block", i, p, q)
		}
		first[p[0].Claim]++
	}
	if len(first) < 6 {
		t.Errorf("10 nodes try to claim %d distinct blocks first: %v", len(first), first)
	}
}

// TestWindow: a node's window is claimWindow distinct blocks of the set,
// each holding an address the set may allocate, in BlocksOf order from
// where it starts, wrapping over the set's ranges; small sets give every
// block once; an IPv6 /64 of /122 blocks costs no more than a /24.
func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  allocator.RangeSet
		bits int
		want int
	}{
		{"one /16", allocator.RangeSet{rangeOf(t, "10.0.0.0/16", "", "")}, 26, claimWindow},
		{"a /24 of four blocks", allocator.RangeSet{rangeOf(t, "10.0.0.0/24", "", "")}, 26, 4},
		{"two ranges sharing a block", allocator.RangeSet{rangeOf(t, "10.0.0.0/24", "10.0.0.2", "10.0.0.70"), rangeOf(t, "10.0.0.0/24", "10.0.0.100", "10.0.0.140")}, 26, 3},
		{"IPv6 /64", allocator.RangeSet{rangeOf(t, "fd00::/64", "", "")}, 26, claimWindow}, // /122
	} {
		t.Run(tc.name, func(t *testing.T) {
			bits := tc.bits
			if tc.set[0].Subnet.Addr().Is6() {
				bits += 96
			}
			var all []netip.Prefix
			for _, r := range tc.set {
				for b := range BlocksOf(r, bits) {
					if len(all) > 1<<12 {
						break
					}
					all = append(all, b)
				}
			}
			for _, node := range []string{"node-a", "node-b", "node-c"} {
				al := newAllocator(&store.Fake{}, node, tc.bits, tc.set)
				win := al.window(0)
				if len(win) != tc.want {
					t.Fatalf("%s: %d blocks %v, want %d", node, len(win), win, tc.want)
				}
				seen := map[netip.Prefix]bool{}
				for _, b := range win {
					if seen[b] || !inSet(tc.set, bits, b) || len(usableIn(tc.set, b)) == 0 {
						t.Errorf("%s: block %s twice, outside the set or without a usable address: %v", node, b, win)
					}
					seen[b] = true
				}
				if tc.want == claimWindow && len(all) < 1<<12 {
					i := slices.Index(all, win[0])
					for j, b := range win {
						if all[(i+j)%len(all)] != b {
							t.Errorf("%s: window %v is not consecutive in BlocksOf order from %s", node, win, win[0])
							break
						}
					}
				}
			}
		})
	}
}

// TestClaimOutsideAFullWindow: when every block of the node's window is
// claimed, the node claims the first unclaimed block of the set.
func TestClaimOutsideAFullWindow(t *testing.T) {
	ctx := context.Background()
	set := allocator.RangeSet{rangeOf(t, "10.0.0.0/16", "", "")}
	f := &store.Fake{}
	al := newAllocator(f, "node-1", 26, set)
	for i, b := range al.window(0) {
		if _, err := f.Commit(ctx, "node-2", store.Attachment{ContainerID: fmt.Sprint("c", i), IfName: "eth0"}, time.Now(),
			[]store.Attempt{{{IP: usableIn(set, b)[0], Claim: b}}}); err != nil {
			t.Fatal(err)
		}
	}
	picks, err := al.claimPicks(ctx, owner(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	win := al.window(0)
	var first netip.Prefix
	for b := range BlocksOf(set[0], 26) {
		if !slices.Contains(win, b) {
			first = b
			break
		}
	}
	if len(picks) == 0 || picks[0].Claim != first {
		t.Errorf("claims %v, want the first unclaimed block %s first", picks, first)
	}
}

// staleView answers each attachment's first View with one view taken
// earlier, as a member lagging behind a burst of the node's ADDs does:
// every ADD of the burst reads the same free addresses.
type staleView struct {
	*store.Fake
	view store.NodeView
	seen map[store.Attachment]bool
}

func (s *staleView) View(ctx context.Context, node string, owner store.Attachment) (store.NodeView, error) {
	if !s.seen[owner] {
		s.seen[owner] = true
		return s.view, nil
	}
	return s.Fake.View(ctx, node, owner)
}

// TestBurstClaimsAheadInOneRound: ADDs that read free addresses which
// concurrent ADDs of the same node then took claim, or share, the node's
// next block in their first round: one write transaction each, no read
// of which blocks are free.
func TestBurstClaimsAheadInOneRound(t *testing.T) {
	ctx := context.Background()
	set := allocator.RangeSet{rangeOf(t, "10.0.0.0/16", "", "")}
	f := &store.Fake{}
	al := newAllocator(f, "node-1", 26, set)
	// Fill the node's first block until firstAttempts addresses are free,
	// the fewest with which a round reads nothing but the view.
	for i := 0; ; i++ {
		v, _ := f.View(ctx, "node-1", owner(-1))
		if free := freeIn(set, v.Blocks, v.Used); len(free) == firstAttempts {
			break
		}
		if _, err := al.Allocate(ctx, owner(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	view, _ := f.View(ctx, "node-1", owner(-1))
	if len(view.Blocks) != 1 {
		t.Fatalf("the node holds blocks %v, want one", view.Blocks)
	}
	// The burst's other ADDs take every free address after the reads.
	for i, ip := range freeIn(set, view.Blocks, view.Used) {
		if n, err := f.Commit(ctx, "node-1", owner(1000+i), time.Now(), []store.Attempt{{{IP: ip}}}); n != 0 || err != nil {
			t.Fatalf("take %s: %d, %v", ip, n, err)
		}
	}
	st := &staleView{Fake: f, view: view, seen: map[store.Attachment]bool{}}
	stale := newAllocator(st, "node-1", 26, set)
	// The node claimed the first block of its window; next comes the second.
	if win := al.window(0); win[0] != view.Blocks[0] {
		t.Fatalf("the node holds %s, want the first block of its window %s", view.Blocks[0], win[0])
	}
	next := al.window(0)[1]
	for i := 2000; i < 2002; i++ {
		before := f.Commits
		got, err := stale.Allocate(ctx, owner(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if f.Commits-before != 1 {
			t.Errorf("ADD %d took %d write transactions, want 1", i, f.Commits-before)
		}
		if !next.Contains(got[0].IP) {
			t.Errorf("ADD %d got %s, want an address of the next block %s", i, got[0].IP, next)
		}
	}
	if blocks, _ := f.NodeBlocks(ctx, "node-1"); !slices.Contains(blocks, next) {
		t.Errorf("the node holds blocks %v, want %s among them", blocks, next)
	}
}
