// Package store defines how the host-local IPAM plugin persists leases: the
// Store interface the allocator works against, the Attachment and Lease
// values it exchanges, and Fake, an in-memory Store for unit tests.
//
// The on-disk implementation lives in the disk subpackage.
package store

import (
	"context"
	"net/netip"
	"strings"
)

// Attachment names the owner of a lease: a container's interface, as in the
// CNI_CONTAINERID and CNI_IFNAME of a CNI call. An attachment with an empty
// IfName is a legacy owner, written by old versions of the reference plugin
// that recorded only the container ID.
type Attachment struct {
	ContainerID string
	IfName      string
}

// NewAttachment returns the attachment of containerID and ifname, with the
// container ID trimmed of surrounding white space as the reference plugin
// records it.
func NewAttachment(containerID, ifname string) Attachment {
	return Attachment{ContainerID: strings.TrimSpace(containerID), IfName: ifname}
}

// Lease is one leased address and its owner.
type Lease struct {
	IP    netip.Addr
	Owner Attachment
}

// Store persists leases for one network.
//
// Every method but Lock and Close must be called between Lock and Unlock;
// the lock serialises all plugin processes that share the network.
type Store interface {
	// Lock takes the store's exclusive lock, waiting for other holders
	// until ctx is done; it then returns an error wrapping ctx.Err().
	Lock(ctx context.Context) error
	// Unlock releases the lock. An error leaves the store consistent.
	Unlock() error
	// Close releases resources; a held lock is released.
	Close() error

	// Reserve leases ip to owner and records ip as the last address
	// reserved from range set rangeID. It reports false, and changes
	// nothing, when ip is already leased.
	Reserve(owner Attachment, ip netip.Addr, rangeID string) (bool, error)
	// LastReservedIP returns the last address reserved from range set
	// rangeID, or the zero Addr when none is recorded.
	LastReservedIP(rangeID string) (netip.Addr, error)
	// Lookup returns the addresses leased to owner, matching it exactly.
	Lookup(owner Attachment) ([]netip.Addr, error)
	// Release removes every lease of owner, matching it exactly, and
	// returns the released addresses.
	Release(owner Attachment) ([]netip.Addr, error)
	// ReleaseIP removes the lease of ip if owner holds it and reports
	// whether it did.
	ReleaseIP(ip netip.Addr, owner Attachment) (bool, error)
	// Reserved returns every leased address, without owners. It is cheaper
	// than Leases.
	Reserved() ([]netip.Addr, error)
	// Leases returns every lease with its owner.
	Leases() ([]Lease, error)
}
