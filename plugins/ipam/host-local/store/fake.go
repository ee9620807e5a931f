package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// errNotLocked is returned by Fake when a method that needs the lock is
// called without it, so tests catch callers that forget to lock.
var errNotLocked = errors.New("store used without holding its lock")

// Fake is an in-memory Store for unit tests. It enforces the locking
// protocol but shares nothing between instances.
type Fake struct {
	locked bool
	leases map[netip.Addr]Attachment
	last   map[string]netip.Addr
}

var _ Store = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{leases: map[netip.Addr]Attachment{}, last: map[string]netip.Addr{}}
}

// Add records a lease directly, as if written earlier; it needs no lock.
func (f *Fake) Add(ip netip.Addr, owner Attachment) { f.leases[ip] = owner }

// SetLastReserved records ip as the last reservation of rangeID; it needs no
// lock.
func (f *Fake) SetLastReserved(rangeID string, ip netip.Addr) { f.last[rangeID] = ip }

// Snapshot returns a copy of all leases; it needs no lock.
func (f *Fake) Snapshot() map[netip.Addr]Attachment {
	out := make(map[netip.Addr]Attachment, len(f.leases))
	for ip, o := range f.leases {
		out[ip] = o
	}
	return out
}

// Locked reports whether the lock is held.
func (f *Fake) Locked() bool { return f.locked }

// Lock implements Store. A done ctx fails it, as a lock that stays held
// would.
func (f *Fake) Lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lock held: %w", err)
	}
	if f.locked {
		return errors.New("lock already held")
	}
	f.locked = true
	return nil
}

// Unlock implements Store.
func (f *Fake) Unlock() error {
	if !f.locked {
		return errNotLocked
	}
	f.locked = false
	return nil
}

// Close implements Store.
func (f *Fake) Close() error {
	f.locked = false
	return nil
}

// Reserve implements Store.
func (f *Fake) Reserve(owner Attachment, ip netip.Addr, rangeID string) (bool, error) {
	if !f.locked {
		return false, errNotLocked
	}
	if _, ok := f.leases[ip]; ok {
		return false, nil
	}
	f.leases[ip] = owner
	f.last[rangeID] = ip
	return true, nil
}

// LastReservedIP implements Store.
func (f *Fake) LastReservedIP(rangeID string) (netip.Addr, error) {
	if !f.locked {
		return netip.Addr{}, errNotLocked
	}
	return f.last[rangeID], nil
}

// Lookup implements Store.
func (f *Fake) Lookup(owner Attachment) ([]netip.Addr, error) {
	if !f.locked {
		return nil, errNotLocked
	}
	var ips []netip.Addr
	for ip, o := range f.leases {
		if o == owner {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, nil
}

// Release implements Store.
func (f *Fake) Release(owner Attachment) ([]netip.Addr, error) {
	ips, err := f.Lookup(owner)
	if err != nil {
		return nil, err
	}
	for _, ip := range ips {
		delete(f.leases, ip)
	}
	return ips, nil
}

// ReleaseIP implements Store.
func (f *Fake) ReleaseIP(ip netip.Addr, owner Attachment) (bool, error) {
	if !f.locked {
		return false, errNotLocked
	}
	if o, ok := f.leases[ip]; !ok || o != owner {
		return false, nil
	}
	delete(f.leases, ip)
	return true, nil
}

// Reserved implements Store.
func (f *Fake) Reserved() ([]netip.Addr, error) {
	if !f.locked {
		return nil, errNotLocked
	}
	ips := make([]netip.Addr, 0, len(f.leases))
	for ip := range f.leases {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, nil
}

// Leases implements Store.
func (f *Fake) Leases() ([]Lease, error) {
	ips, err := f.Reserved()
	if err != nil {
		return nil, err
	}
	out := make([]Lease, 0, len(ips))
	for _, ip := range ips {
		out = append(out, Lease{IP: ip, Owner: f.leases[ip]})
	}
	return out, nil
}
