// Package allocator is the pure allocation logic of the host-local IPAM
// plugin: range sets, round-robin iteration from the last reserved address,
// requested addresses, release, garbage collection and free-space checks.
// It persists nothing itself; all state lives behind a store.Store, and
// every operation holds the store's lock for its whole duration.
package allocator

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// ExhaustedError reports that a range set has no free address.
type ExhaustedError struct {
	Set    int
	Ranges RangeSet
}

func (e *ExhaustedError) Error() string {
	return describe(e.Set, e.Ranges) + " has no free address"
}

// TakenError reports that a requested address is leased already.
type TakenError struct {
	Set  int
	Addr netip.Addr
}

func (e *TakenError) Error() string {
	return fmt.Sprintf("requested address %s in range set %d is already leased", e.Addr, e.Set)
}

// UnusableError reports a requested address that may not be leased from its
// range set: outside it, or its gateway, network or broadcast address.
type UnusableError struct {
	Set    int
	Addr   netip.Addr
	Reason string
}

func (e *UnusableError) Error() string {
	return fmt.Sprintf("requested address %s is %s of range set %d", e.Addr, e.Reason, e.Set)
}

// DuplicateError reports an ADD for an attachment that already holds an
// address in a range set.
type DuplicateError struct {
	Set   int
	Addr  netip.Addr
	Owner store.Attachment
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("container %q interface %q already holds %s in range set %d",
		e.Owner.ContainerID, e.Owner.IfName, e.Addr, e.Set)
}

// Allocation is one address leased from a range set.
type Allocation struct {
	Set     int
	Address netip.Prefix // the address with its subnet's prefix length
	Gateway netip.Addr
}

// Allocator leases addresses from a list of range sets, one per set.
type Allocator struct {
	store store.Store
	sets  []RangeSet
}

// New returns an Allocator over sets backed by st.
func New(st store.Store, sets []RangeSet) *Allocator {
	return &Allocator{store: st, sets: sets}
}

// withLock runs fn holding the store's lock, waiting for it until ctx is
// done. An Unlock error is dropped: every store step leaves it consistent,
// and the store repairs its own bookkeeping on the next lock.
func (a *Allocator) withLock(ctx context.Context, fn func() error) error {
	if err := a.store.Lock(ctx); err != nil {
		return fmt.Errorf("lock store: %w", err)
	}
	defer func() { _ = a.store.Unlock() }()
	return fn()
}

// Allocate leases one address from every range set to owner. requested maps
// a range set index to the address wanted from it; other sets are served
// round-robin from their last reserved address. On error nothing stays
// leased.
func (a *Allocator) Allocate(ctx context.Context, owner store.Attachment, requested map[int]netip.Addr) ([]Allocation, error) {
	var out []Allocation
	err := a.withLock(ctx, func() (err error) {
		held, err := a.lookup(owner)
		if err != nil {
			return err
		}
		for i, s := range a.sets {
			for _, ip := range held {
				if s.Contains(ip) {
					return &DuplicateError{Set: i, Addr: ip, Owner: owner}
				}
			}
		}
		defer func() {
			if err == nil {
				return
			}
			for _, al := range out {
				if _, rerr := a.store.ReleaseIP(al.Address.Addr(), owner); rerr != nil {
					err = errors.Join(err, fmt.Errorf("undo lease of %s: %w", al.Address.Addr(), rerr))
				}
			}
			out = nil
		}()
		for i, s := range a.sets {
			al, err := a.allocateFrom(i, s, owner, requested)
			if err != nil {
				return err
			}
			out = append(out, al)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (a *Allocator) allocateFrom(i int, s RangeSet, owner store.Attachment, requested map[int]netip.Addr) (Allocation, error) {
	rangeID := strconv.Itoa(i)
	if ip, ok := requested[i]; ok {
		r, ok := s.RangeFor(ip)
		if !ok {
			return Allocation{}, &UnusableError{Set: i, Addr: ip, Reason: "outside every range"}
		}
		if reason := r.Reason(ip); reason != "" {
			return Allocation{}, &UnusableError{Set: i, Addr: ip, Reason: reason}
		}
		reserved, err := a.store.Reserve(owner, ip, rangeID)
		if err != nil {
			return Allocation{}, fmt.Errorf("reserve %s: %w", ip, err)
		}
		if !reserved {
			return Allocation{}, &TakenError{Set: i, Addr: ip}
		}
		return Allocation{Set: i, Address: netip.PrefixFrom(ip, r.Subnet.Bits()), Gateway: r.Gateway}, nil
	}
	last, err := a.store.LastReservedIP(rangeID)
	if err != nil {
		return Allocation{}, fmt.Errorf("read last reserved address of range set %d: %w", i, err)
	}
	for r, ip := range s.Candidates(last) {
		reserved, err := a.store.Reserve(owner, ip, rangeID)
		if err != nil {
			return Allocation{}, fmt.Errorf("reserve %s: %w", ip, err)
		}
		if reserved {
			return Allocation{Set: i, Address: netip.PrefixFrom(ip, r.Subnet.Bits()), Gateway: r.Gateway}, nil
		}
	}
	return Allocation{}, &ExhaustedError{Set: i, Ranges: s}
}

// legacy returns the owner recorded by old reference versions, which wrote
// only the container ID.
func legacy(owner store.Attachment) (store.Attachment, bool) {
	if owner.IfName == "" {
		return owner, false
	}
	return store.Attachment{ContainerID: owner.ContainerID}, true
}

// lookup returns the addresses of owner, including legacy leases of its
// container, as the reference plugin matches them.
func (a *Allocator) lookup(owner store.Attachment) ([]netip.Addr, error) {
	ips, err := a.store.Lookup(owner)
	if err != nil {
		return nil, fmt.Errorf("look up leases of %q %q: %w", owner.ContainerID, owner.IfName, err)
	}
	if old, ok := legacy(owner); ok {
		more, err := a.store.Lookup(old)
		if err != nil {
			return nil, fmt.Errorf("look up legacy leases of %q: %w", owner.ContainerID, err)
		}
		ips = append(ips, more...)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, nil
}

// Lookup returns the addresses leased to owner.
func (a *Allocator) Lookup(ctx context.Context, owner store.Attachment) ([]netip.Addr, error) {
	var ips []netip.Addr
	err := a.withLock(ctx, func() (err error) {
		ips, err = a.lookup(owner)
		return err
	})
	return ips, err
}

// Release removes every lease of owner and returns the released addresses.
// Like the reference plugin, it falls back to legacy leases of the container
// when owner holds none. Nothing to release is not an error.
func (a *Allocator) Release(ctx context.Context, owner store.Attachment) ([]netip.Addr, error) {
	var ips []netip.Addr
	err := a.withLock(ctx, func() (err error) {
		ips, err = a.store.Release(owner)
		if err != nil {
			return fmt.Errorf("release leases of %q %q: %w", owner.ContainerID, owner.IfName, err)
		}
		if old, ok := legacy(owner); ok && len(ips) == 0 {
			ips, err = a.store.Release(old)
			if err != nil {
				return fmt.Errorf("release legacy leases of %q: %w", owner.ContainerID, err)
			}
		}
		return nil
	})
	return ips, err
}

// GC releases every lease whose owner is not in valid and returns the
// released leases. A legacy lease, which names only a container, stays when
// any valid attachment belongs to that container. A lease whose owner is
// not valid UTF-8 stays too: valid comes from JSON, which cannot carry such
// a name, so GC cannot know whether the runtime still uses it (DEL
// releases it).
func (a *Allocator) GC(ctx context.Context, valid []store.Attachment) ([]store.Lease, error) {
	keep := make(map[store.Attachment]bool, len(valid))
	containers := make(map[string]bool, len(valid))
	for _, v := range valid {
		v = store.NewAttachment(v.ContainerID, v.IfName)
		keep[v] = true
		containers[v.ContainerID] = true
	}
	var released []store.Lease
	err := a.withLock(ctx, func() error {
		leases, err := a.store.Leases()
		if err != nil {
			return fmt.Errorf("list leases: %w", err)
		}
		for _, l := range leases {
			if keep[l.Owner] || (l.Owner.IfName == "" && l.Owner.ContainerID != "" && containers[l.Owner.ContainerID]) ||
				!utf8.ValidString(l.Owner.ContainerID) || !utf8.ValidString(l.Owner.IfName) {
				continue
			}
			ok, err := a.store.ReleaseIP(l.IP, l.Owner)
			if err != nil {
				return fmt.Errorf("release %s: %w", l.IP, err)
			}
			if ok {
				released = append(released, l)
			}
		}
		return nil
	})
	return released, err
}

// Status returns an *ExhaustedError for the first range set without a free
// address, or nil when every set can serve an ADD.
func (a *Allocator) Status(ctx context.Context) error {
	return a.withLock(ctx, func() error {
		ips, err := a.store.Reserved()
		if err != nil {
			return fmt.Errorf("list leases: %w", err)
		}
		for i, s := range a.sets {
			used := int64(0)
			for _, ip := range ips {
				if r, ok := s.RangeFor(ip); ok && r.Usable(ip) {
					used++
				}
			}
			if s.Capacity().Cmp(big.NewInt(used)) <= 0 {
				return &ExhaustedError{Set: i, Ranges: s}
			}
		}
		return nil
	})
}
