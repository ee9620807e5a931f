package store

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Fake is an in-memory Store with the semantics of the etcd one, for unit
// tests. Its zero value is empty and ready; it is safe for concurrent use.
// Commits counts the write transactions it was asked for.
type Fake struct {
	mu      sync.Mutex
	ips     map[netip.Addr]Allocation
	blocks  map[netip.Prefix]Block
	Commits int
}

var _ Store = (*Fake)(nil)

func (f *Fake) init() {
	if f.ips == nil {
		f.ips = map[netip.Addr]Allocation{}
		f.blocks = map[netip.Prefix]Block{}
	}
}

// Held implements Store.
func (f *Fake) Held(_ context.Context, node string, owner Attachment) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for ip, a := range f.ips {
		if a.Node == node && a.Owner == owner {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// View implements Store.
func (f *Fake) View(ctx context.Context, node string, owner Attachment) (NodeView, error) {
	var v NodeView
	v.Held, _ = f.Held(ctx, node, owner)
	v.Blocks, _ = f.NodeBlocks(ctx, node)
	allocs, _ := f.Allocations(ctx, node)
	for _, a := range allocs {
		v.Used = append(v.Used, a.IP)
	}
	return v, nil
}

// NodeBlocks implements Store.
func (f *Fake) NodeBlocks(_ context.Context, node string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	for p, b := range f.blocks {
		if b.Node == node {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out, nil
}

// Blocks implements Store.
func (f *Fake) Blocks(_ context.Context) ([]Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Block
	for _, b := range f.blocks {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Block) int { return a.Prefix.Compare(b.Prefix) })
	return out, nil
}

// Claimed implements Store.
func (f *Fake) Claimed(_ context.Context, blocks []netip.Prefix) ([]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]bool, len(blocks))
	for i, b := range blocks {
		_, out[i] = f.blocks[b]
	}
	return out, nil
}

// Used implements Store.
func (f *Fake) Used(_ context.Context, spans []Span) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for ip := range f.ips {
		for _, s := range spans {
			if ip.BitLen() == s.First.BitLen() && ip.Compare(s.First) >= 0 && ip.Compare(s.Last) <= 0 {
				out = append(out, ip)
				break
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// Commit implements Store.
func (f *Fake) Commit(_ context.Context, node string, owner Attachment, now time.Time, attempts []Attempt) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.Commits++
	for _, a := range f.ips {
		if a.Node == node && a.Owner == owner {
			return -1, nil
		}
	}
	for i, at := range attempts {
		if !f.holds(node, at) {
			continue
		}
		for _, p := range at {
			f.ips[p.IP] = Allocation{IP: p.IP, Owner: owner, Node: node, Time: now}
			if p.Claim.IsValid() {
				f.blocks[p.Claim] = Block{Prefix: p.Claim, Node: node, Time: now}
			}
		}
		return i, nil
	}
	return -1, nil
}

func (f *Fake) holds(node string, at Attempt) bool {
	for _, p := range at {
		if _, taken := f.ips[p.IP]; taken {
			return false
		}
		if _, claimed := f.blocks[p.Claim]; p.Claim.IsValid() && claimed {
			return false
		}
		if b, claimed := f.blocks[p.Mine]; p.Mine.IsValid() && (!claimed || b.Node != node) {
			return false
		}
	}
	return true
}

// Release implements Store.
func (f *Fake) Release(_ context.Context, node string, owner Attachment) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for ip, a := range f.ips {
		if a.Node == node && a.Owner == owner {
			delete(f.ips, ip)
			out = append(out, ip)
		}
	}
	if len(out) > 0 {
		f.Commits++
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// Allocations implements Store.
func (f *Fake) Allocations(_ context.Context, node string) ([]Allocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Allocation
	for _, a := range f.ips {
		if node == "" || a.Node == node {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b Allocation) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// ReleaseBlocks implements Store.
func (f *Fake) ReleaseBlocks(_ context.Context, node string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Prefix
	for p, b := range f.blocks {
		if b.Node == node {
			delete(f.blocks, p)
			out = append(out, p)
		}
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out, nil
}

// Ping implements Store.
func (f *Fake) Ping(context.Context) error { return nil }

// Close implements Store.
func (f *Fake) Close() error { return nil }
