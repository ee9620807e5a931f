package allocator

import (
	"fmt"
	"iter"
	"math/big"
	"net/netip"
	"strings"
)

// Range is a contiguous block of addresses inside one subnet, bounds
// inclusive. Values are expected to be validated (see the plugin's config
// parser): RangeStart <= RangeEnd, both inside Subnet, Subnet masked, and
// Gateway of the same family.
type Range struct {
	Subnet     netip.Prefix
	RangeStart netip.Addr
	RangeEnd   netip.Addr
	Gateway    netip.Addr
}

// FirstHost returns the first address after the network address of p.
func FirstHost(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// LastAddr returns the last address of p: the broadcast address for IPv4.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// DefaultRangeEnd returns the default last allocatable address of p, as the
// reference plugin computes it: the address before the broadcast address for
// IPv4, the last address for IPv6.
func DefaultRangeEnd(p netip.Prefix) netip.Addr {
	last := LastAddr(p)
	if p.Addr().Is4() {
		return last.Prev()
	}
	return last
}

// Contains reports whether a lies within the range bounds and subnet.
func (r Range) Contains(a netip.Addr) bool {
	return r.Subnet.Contains(a) && a.Compare(r.RangeStart) >= 0 && a.Compare(r.RangeEnd) <= 0
}

// Reason returns why a, an address inside the range, may not be leased, or
// "" when it may. The gateway is never leased, nor are the IPv4 network and
// broadcast addresses of the subnet.
func (r Range) Reason(a netip.Addr) string {
	switch {
	case !r.Contains(a):
		return "outside the range"
	case a == r.Gateway:
		return "the gateway"
	case a.Is4() && a == r.Subnet.Masked().Addr():
		return "the network address"
	case a.Is4() && a == LastAddr(r.Subnet):
		return "the broadcast address"
	}
	return ""
}

// Usable reports whether a may be leased from the range.
func (r Range) Usable(a netip.Addr) bool { return r.Reason(a) == "" }

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool {
	if r.RangeStart.Is4() != o.RangeStart.Is4() {
		return false
	}
	return r.RangeStart.Compare(o.RangeEnd) <= 0 && o.RangeStart.Compare(r.RangeEnd) <= 0
}

// String returns "start-end".
func (r Range) String() string {
	return r.RangeStart.String() + "-" + r.RangeEnd.String()
}

// capacity returns how many addresses of r may be leased.
func (r Range) capacity() *big.Int {
	n := new(big.Int).Sub(toInt(r.RangeEnd), toInt(r.RangeStart))
	n.Add(n, big.NewInt(1))
	excluded := map[netip.Addr]bool{r.Gateway: true}
	if r.Subnet.Addr().Is4() {
		excluded[r.Subnet.Masked().Addr()] = true
		excluded[LastAddr(r.Subnet)] = true
	}
	for a := range excluded {
		if r.Contains(a) {
			n.Sub(n, big.NewInt(1))
		}
	}
	return n
}

func toInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

// RangeSet is a list of non-overlapping ranges of one address family; the
// plugin leases one address per range set.
type RangeSet []Range

// RangeFor returns the range of s that contains a.
func (s RangeSet) RangeFor(a netip.Addr) (Range, bool) {
	for _, r := range s {
		if r.Contains(a) {
			return r, true
		}
	}
	return Range{}, false
}

// Contains reports whether some range of s contains a.
func (s RangeSet) Contains(a netip.Addr) bool {
	_, ok := s.RangeFor(a)
	return ok
}

// String returns the ranges as "start-end,start-end".
func (s RangeSet) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Capacity returns how many addresses of s may be leased.
func (s RangeSet) Capacity() *big.Int {
	n := new(big.Int)
	for _, r := range s {
		n.Add(n, r.capacity())
	}
	return n
}

// Candidates yields every leasable address of s once, with its range, in
// round-robin order: from the address after last (when s contains last)
// to the end of its range, through the following ranges, wrapping around,
// and ending with last itself. Without a usable last it starts at the first
// range's start.
func (s RangeSet) Candidates(last netip.Addr) iter.Seq2[Range, netip.Addr] {
	return func(yield func(Range, netip.Addr) bool) {
		if len(s) == 0 {
			return
		}
		k, start := 0, s[0].RangeStart
		for i, r := range s {
			if last.IsValid() && r.Contains(last) {
				k, start = i, last.Next()
				if last == r.RangeEnd {
					k = (i + 1) % len(s)
					start = s[k].RangeStart
				}
				break
			}
		}
		n := len(s)
		for j := 0; j <= n; j++ {
			r := s[(k+j)%n]
			from, to := r.RangeStart, r.RangeEnd
			if j == 0 {
				from = start
			}
			if j == n {
				if start == r.RangeStart {
					return
				}
				to = start.Prev()
			}
			for a := from; ; a = a.Next() {
				if r.Usable(a) && !yield(r, a) {
					return
				}
				if a == to {
					break
				}
			}
		}
	}
}

// describe names a range set in errors: "range set 0 (10.0.0.2-10.0.0.254)".
func describe(i int, s RangeSet) string {
	return fmt.Sprintf("range set %d (%s)", i, s.String())
}
