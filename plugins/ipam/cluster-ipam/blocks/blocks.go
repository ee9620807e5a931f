// Package blocks is cluster-ipam's allocation logic: it divides the ranges
// of host-local's range syntax into aligned blocks, lets a node claim free
// blocks and allocate inside its own, borrows from other nodes' blocks when
// none is free, and builds the attempts that one store transaction tries
// in order. It persists nothing itself: all state lives behind a
// store.Store.
package blocks

import (
	"context"
	"fmt"
	"hash/fnv"
	"iter"
	"math/big"
	"net/netip"
	"slices"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
)

// Limits of one commit: how many attempts its transaction carries, how
// many blocks it may claim and how many of its attempts allocate inside
// each, among how many blocks those are looked for, and how many rounds
// of read and commit an allocation takes before giving up.
const (
	maxAttempts = 24
	// firstAttempts is how many free addresses of the node's blocks the
	// first round tries: an uncontested ADD needs one, and each nested
	// attempt makes the transaction longer for every member to log and
	// apply (12 attempts cost 0.4 ms less than 24); a lost round costs a
	// read and a commit. After them come picksAhead picks in the node's
	// next block, one claim and the rest inside it, taken from the node's
	// window with no read: when a burst of the node's ADDs, all reading
	// the same free addresses, takes them all, the losers claim or share
	// the next block in the same round instead of losing it. Later rounds
	// try maxAttempts, with a read of which blocks are free.
	firstAttempts = 8
	picksAhead    = 4
	// When fewer addresses are free in the node's blocks than a round
	// tries, it also carries picks in two unclaimed blocks, after the
	// free ones: tried only when every free one was taken meanwhile, so
	// that a node whose own concurrent ADDs use up its blocks claims the
	// next one in the same round.
	claimBlocks   = 2
	picksPerClaim = 11
	claimWindow   = 64
	maxRounds     = 8
)

// ConflictError reports an allocation that lost every round to concurrent
// allocations: the runtime may retry.
type ConflictError struct{ Rounds int }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("every candidate address was taken concurrently, %d times", e.Rounds)
}

// Allocator allocates one address per range set for a node.
type Allocator struct {
	Store store.Store
	Sets  []allocator.RangeSet
	// BlockBits is the prefix length of the blocks of each range set.
	BlockBits []int
	Node      string
	Now       func() time.Time
}

// Allocated is an allocated address and the range it came from.
type Allocated struct {
	IP    netip.Addr
	Range allocator.Range
}

// BlocksOf yields the aligned blocks of prefix length bits that hold an
// address of r, in address order.
func BlocksOf(r allocator.Range, bits int) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		b := netip.PrefixFrom(r.RangeStart, bits).Masked()
		for {
			if !yield(b) {
				return
			}
			next := allocator.LastAddr(b).Next()
			if !next.IsValid() || next.Compare(r.RangeEnd) > 0 {
				return
			}
			b = netip.PrefixFrom(next, bits)
		}
	}
}

// usableIn returns the addresses of block b that set may allocate, in
// order.
func usableIn(set allocator.RangeSet, b netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for a := range usable(set, b) {
		out = append(out, a)
	}
	return out
}

// hasUsable reports whether set may allocate an address of block b.
func hasUsable(set allocator.RangeSet, b netip.Prefix) bool {
	for range usable(set, b) {
		return true
	}
	return false
}

// usable yields the addresses of block b that set may allocate, in order.
func usable(set allocator.RangeSet, b netip.Prefix) iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for _, r := range set {
			first, last := b.Addr(), allocator.LastAddr(b)
			if first.Compare(r.RangeEnd) > 0 || last.Compare(r.RangeStart) < 0 {
				continue
			}
			first, last = maxAddr(first, r.RangeStart), minAddr(last, r.RangeEnd)
			for a := first; ; a = a.Next() {
				if r.Usable(a) && !yield(a) {
					return
				}
				if a == last {
					break
				}
			}
		}
	}
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Compare(b) > 0 {
		return a
	}
	return b
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Compare(b) < 0 {
		return a
	}
	return b
}

// inSet reports whether block b, of the set's block size, holds an
// address of set.
func inSet(set allocator.RangeSet, bits int, b netip.Prefix) bool {
	if b.Bits() != bits {
		return false
	}
	for _, r := range set {
		if r.RangeStart.BitLen() == b.Addr().BitLen() &&
			b.Addr().Compare(r.RangeEnd) <= 0 && allocator.LastAddr(b).Compare(r.RangeStart) >= 0 {
			return true
		}
	}
	return false
}

// scatter returns up to n of addrs in an order of owner's own: from a
// start and with a stride both hashed from the attachment, the stride
// prime to len(addrs) so that no address comes twice. Concurrent
// allocations of a node read the same free addresses; walking them in
// consecutive windows, calls whose windows overlap contend for one run of
// addresses, and one that loses its first pick tends to lose the next
// ones too (linear probing's clustering), while scattered orders meet
// only at scattered addresses.
func scatter(addrs []netip.Addr, owner store.Attachment, n int) []netip.Addr {
	l := len(addrs)
	if l == 0 {
		return nil
	}
	sum := hash64(owner.ContainerID + "/" + owner.IfName)
	start, stride := int(sum%uint64(l)), 1
	if l > 2 {
		stride = 1 + int((sum>>32)%uint64(l-1))
		for gcd(stride, l) != 1 {
			stride = stride%(l-1) + 1
		}
	}
	out := make([]netip.Addr, 0, min(n, l))
	for i := 0; i < l && i < n; i++ {
		out = append(out, addrs[(start+i*stride)%l])
	}
	return out
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Allocate returns owner's addresses: the ones it holds already when an
// earlier ADD of the same attachment got them (a retried ADD), or new ones,
// one per range set, requested[i] for set i where given.
func (a *Allocator) Allocate(ctx context.Context, owner store.Attachment, requested map[int]netip.Addr) ([]Allocated, error) {
	for round := 0; round < maxRounds; round++ {
		view, err := a.Store.View(ctx, a.Node, owner)
		if err != nil {
			return nil, err
		}
		if len(view.Held) > 0 {
			return a.existing(owner, view.Held, requested)
		}
		options, err := a.options(ctx, owner, view, requested, round > 0)
		if err != nil {
			return nil, err
		}
		attempts := combine(options)
		i, err := a.Store.Commit(ctx, a.Node, owner, a.Now(), attempts)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			out := make([]Allocated, len(a.Sets))
			for s, p := range attempts[i] {
				r, _ := a.Sets[s].RangeFor(p.IP)
				out[s] = Allocated{IP: p.IP, Range: r}
			}
			return out, nil
		}
		if err := a.checkRequested(ctx, requested); err != nil {
			return nil, err
		}
	}
	return nil, &ConflictError{Rounds: maxRounds}
}

// existing returns the addresses owner holds when they are one per range
// set and match the requests, and a DuplicateError otherwise.
func (a *Allocator) existing(owner store.Attachment, held []netip.Addr, requested map[int]netip.Addr) ([]Allocated, error) {
	out := make([]Allocated, len(a.Sets))
	for _, ip := range held {
		set := slices.IndexFunc(a.Sets, func(s allocator.RangeSet) bool { return s.Contains(ip) })
		if set < 0 || out[set].IP.IsValid() {
			return nil, &allocator.DuplicateError{Set: max(set, 0), Addr: ip, Owner: owner}
		}
		if req, ok := requested[set]; ok && req != ip {
			return nil, &allocator.DuplicateError{Set: set, Addr: ip, Owner: owner}
		}
		r, _ := a.Sets[set].RangeFor(ip)
		out[set] = Allocated{IP: ip, Range: r}
	}
	for set, al := range out {
		if !al.IP.IsValid() {
			return nil, &allocator.DuplicateError{Set: set, Addr: held[0], Owner: owner}
		}
	}
	return out, nil
}

// checkRequested returns a TakenError for a requested address that is
// allocated.
func (a *Allocator) checkRequested(ctx context.Context, requested map[int]netip.Addr) error {
	for set, ip := range requested {
		used, err := a.Store.Used(ctx, []store.Span{{First: ip, Last: ip}})
		if err != nil {
			return err
		}
		if len(used) > 0 {
			return &allocator.TakenError{Set: set, Addr: ip}
		}
	}
	return nil
}

// options returns, per range set, the picks to try in order: inside the
// node's own blocks; then, when those run short, inside free blocks to
// claim (and inside those same blocks should a concurrent call of the same
// node claim them first); and only when neither exists, any free address
// of another node's block.
//
// The node's own addresses come from view; an address another node holds
// inside this node's blocks (borrowed, or requested) fails its attempt in
// the transaction and the next is tried, so it costs no read here. After
// a round whose every attempt failed, exact reads the addresses of the
// node's blocks themselves.
func (a *Allocator) options(ctx context.Context, owner store.Attachment, view store.NodeView, requested map[int]netip.Addr, exact bool) ([][]store.Pick, error) {
	var err error
	out := make([][]store.Pick, len(a.Sets))
	for s, set := range a.Sets {
		if ip, ok := requested[s]; ok {
			out[s] = []store.Pick{{IP: ip}}
			continue
		}
		var mine []netip.Prefix
		for _, b := range view.Blocks {
			if inSet(set, a.BlockBits[s], b) {
				mine = append(mine, b)
			}
		}
		used := view.Used
		if exact && len(mine) > 0 {
			var spans []store.Span
			for _, b := range mine {
				spans = append(spans, store.Span{First: b.Addr(), Last: allocator.LastAddr(b)})
			}
			inBlocks, err := a.Store.Used(ctx, spans)
			if err != nil {
				return nil, err
			}
			used = append(slices.Clone(used), inBlocks...)
		}
		free := freeIn(set, mine, used)
		n := maxAttempts
		if !exact {
			n = firstAttempts
		}
		var picks []store.Pick
		for _, ip := range scatter(free, owner, n) {
			picks = append(picks, store.Pick{IP: ip})
		}
		switch {
		case len(free) < n:
			claims, err := a.claimPicks(ctx, owner, s)
			if err != nil {
				return nil, err
			}
			picks = append(picks, claims...)
		case !exact:
			picks = append(picks, a.aheadPicks(owner, s, mine)...)
		}
		if len(picks) == 0 {
			if picks, err = a.borrowPicks(ctx, owner, set); err != nil {
				return nil, err
			}
		}
		if len(picks) == 0 {
			return nil, &allocator.ExhaustedError{Set: s, Ranges: set}
		}
		out[s] = picks
	}
	return out, nil
}

// freeIn returns the addresses of set inside blocks that are not in used.
func freeIn(set allocator.RangeSet, blocks []netip.Prefix, used []netip.Addr) []netip.Addr {
	taken := map[netip.Addr]bool{}
	for _, ip := range used {
		taken[ip] = true
	}
	var free []netip.Addr
	for _, b := range blocks {
		for _, ip := range usableIn(set, b) {
			if !taken[ip] {
				free = append(free, ip)
			}
		}
	}
	return free
}

// claimPicks returns picks inside two unclaimed blocks of set s: the
// first pick claims the block, the next few allocate in it should another
// call of this node have claimed it meanwhile. The blocks are the first
// unclaimed ones of the node's window (see window), so nodes that claim
// at once (a cluster starting) try different blocks while a node's
// concurrent calls try the same ones and share them. Only when the whole
// window is claimed does it read every claimed block and take the first
// unclaimed of the set.
func (a *Allocator) claimPicks(ctx context.Context, owner store.Attachment, s int) ([]store.Pick, error) {
	win := a.window(s)
	taken, err := a.Store.Claimed(ctx, win)
	if err != nil {
		return nil, err
	}
	var blocks []netip.Prefix
	for i, b := range win {
		if !taken[i] && len(blocks) < claimBlocks {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		all, err := a.Store.Blocks(ctx)
		if err != nil {
			return nil, err
		}
		claimed := map[netip.Prefix]bool{}
		for _, b := range all {
			claimed[b.Prefix] = true
		}
	collect:
		for _, r := range a.Sets[s] {
			for b := range BlocksOf(r, a.BlockBits[s]) {
				if len(blocks) == claimBlocks {
					break collect
				}
				if !claimed[b] && !slices.Contains(blocks, b) && hasUsable(a.Sets[s], b) {
					blocks = append(blocks, b)
				}
			}
		}
	}
	var picks []store.Pick
	for _, b := range blocks {
		picks = append(picks, claimIn(a.Sets[s], b, owner, 1+picksPerClaim)...)
	}
	return picks, nil
}

// claimIn returns n picks inside block b: the first claims it, the others
// allocate in it once this node holds it.
func claimIn(set allocator.RangeSet, b netip.Prefix, owner store.Attachment, n int) []store.Pick {
	var picks []store.Pick
	for j, ip := range scatter(usableIn(set, b), owner, n) {
		if j == 0 {
			picks = append(picks, store.Pick{IP: ip, Claim: b})
		} else {
			picks = append(picks, store.Pick{IP: ip, Mine: b})
		}
	}
	return picks
}

// aheadPicks returns picks inside the first block of the node's window
// (set s) that is not among mine, the one the node would claim next,
// without reading whether another node claimed it: then its attempts fail
// in the transaction, where they came after every free address.
func (a *Allocator) aheadPicks(owner store.Attachment, s int, mine []netip.Prefix) []store.Pick {
	for _, b := range a.window(s) {
		if !slices.Contains(mine, b) {
			return claimIn(a.Sets[s], b, owner, picksAhead)
		}
	}
	return nil
}

// window returns up to claimWindow blocks of set s holding an address the
// set may allocate, consecutive in the order of BlocksOf over the set's
// ranges (wrapping around), from a block chosen by a hash of the node's
// name: where this node looks for blocks to claim. Reading whether these
// few are claimed costs the same whatever the range's size.
func (a *Allocator) window(s int) []netip.Prefix {
	set, bits := a.Sets[s], a.BlockBits[s]
	counts := make([]*big.Int, len(set))
	total := new(big.Int)
	for i, r := range set {
		counts[i] = blockCount(r, bits)
		total.Add(total, counts[i])
	}
	at := new(big.Int).Mod(new(big.Int).SetUint64(hash64(a.Node)), total)
	ri := 0
	for at.Cmp(counts[ri]) >= 0 {
		at.Sub(at, counts[ri])
		ri++
	}
	walk := 4 * claimWindow // blocks to look at, some unusable or shared
	if total.IsInt64() && total.Int64() < int64(walk) {
		walk = int(total.Int64())
	}
	var out []netip.Prefix
	b := blockAt(set[ri], bits, at)
	for ; walk > 0 && len(out) < claimWindow; walk-- {
		if !slices.Contains(out, b) && hasUsable(set, b) {
			out = append(out, b)
		}
		next := allocator.LastAddr(b).Next()
		if !next.IsValid() || next.Compare(set[ri].RangeEnd) > 0 {
			ri = (ri + 1) % len(set)
			next = set[ri].RangeStart
		}
		b = netip.PrefixFrom(next, bits).Masked()
	}
	return out
}

// blockCount returns the number of blocks BlocksOf yields for r.
func blockCount(r allocator.Range, bits int) *big.Int {
	first := netip.PrefixFrom(r.RangeStart, bits).Masked().Addr()
	n := new(big.Int).Sub(addrInt(r.RangeEnd), addrInt(first))
	n.Rsh(n, uint(r.RangeStart.BitLen()-bits))
	return n.Add(n, big.NewInt(1))
}

// blockAt returns the block BlocksOf yields i-th for r.
func blockAt(r allocator.Range, bits int, i *big.Int) netip.Prefix {
	first := netip.PrefixFrom(r.RangeStart, bits).Masked().Addr()
	n := new(big.Int).Lsh(i, uint(r.RangeStart.BitLen()-bits))
	n.Add(n, addrInt(first))
	a, _ := netip.AddrFromSlice(n.FillBytes(make([]byte, first.BitLen()/8)))
	return netip.PrefixFrom(a, bits)
}

func addrInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

// borrowPicks returns free addresses of set anywhere, for when the node's
// blocks are full and no block is free.
func (a *Allocator) borrowPicks(ctx context.Context, owner store.Attachment, set allocator.RangeSet) ([]store.Pick, error) {
	var spans []store.Span
	for _, r := range set {
		spans = append(spans, store.Span{First: r.RangeStart, Last: r.RangeEnd})
	}
	used, err := a.Store.Used(ctx, spans)
	if err != nil {
		return nil, err
	}
	taken := map[netip.Addr]bool{}
	for _, ip := range used {
		taken[ip] = true
	}
	free := freeOf(set, taken, maxAttempts*4)
	var picks []store.Pick
	for _, ip := range scatter(free, owner, maxAttempts) {
		picks = append(picks, store.Pick{IP: ip})
	}
	return picks, nil
}

// freeOf returns up to n usable addresses of set not in taken, in order.
func freeOf(set allocator.RangeSet, taken map[netip.Addr]bool, n int) []netip.Addr {
	var out []netip.Addr
	for _, ip := range set.Candidates(netip.Addr{}) {
		if len(out) == n {
			break
		}
		if !taken[ip] {
			out = append(out, ip)
		}
	}
	return out
}

// combine builds the attempts: attempt i takes option i of every range
// set, or a set's last option when it has fewer.
func combine(options [][]store.Pick) []store.Attempt {
	n := 0
	for _, o := range options {
		n = max(n, len(o))
	}
	n = min(n, maxAttempts)
	var out []store.Attempt
	for i := range n {
		at := make(store.Attempt, len(options))
		seen := map[netip.Prefix]bool{}
		for s, o := range options {
			p := o[min(i, len(o)-1)]
			// Two range sets may share a block: claim it once.
			switch {
			case p.Claim.IsValid() && seen[p.Claim]:
				p.Claim = netip.Prefix{}
			case p.Claim.IsValid():
				seen[p.Claim] = true
			case p.Mine.IsValid() && seen[p.Mine]:
				p.Mine = netip.Prefix{}
			}
			at[s] = p
		}
		out = append(out, at)
	}
	return out
}
