// Package store defines how cluster-ipam persists a network's blocks and
// allocations: the Store interface the allocator works against, the values
// it exchanges, and Fake, an in-memory Store for unit tests. The etcd
// implementation lives in the etcdstore subpackage.
//
// A Store holds one network. Every write is one atomic transaction, so a
// failed or interrupted call leaves either all of its keys or none.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// ErrUnavailable marks an error of a store that may answer if asked
// again: a member went away or the cluster is electing a leader. A write
// that failed so may or may not have been applied.
var ErrUnavailable = errors.New("store unavailable")

// Retry calls fn until it returns nil or an error that is not
// ErrUnavailable, or ctx ends, pausing pause between calls. fn must be
// safe to repeat.
func Retry(ctx context.Context, pause time.Duration, fn func() error) error {
	for {
		err := fn()
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// Attachment is the owner of an allocation: a container's interface, as
// host-local names it.
type Attachment = store.Attachment

// Allocation is one allocated address and who holds it.
type Allocation struct {
	IP    netip.Addr
	Owner Attachment
	Node  string
	Time  time.Time
}

// Block is a claimed block and the node that claimed it.
type Block struct {
	Prefix netip.Prefix
	Node   string
	Time   time.Time
}

// Pick is one address of an attempt with its conditions. IP must be free.
// When Claim is valid the block must be unclaimed and is claimed for the
// node in the same transaction; when Mine is valid the block must be
// claimed by the node already.
type Pick struct {
	IP    netip.Addr
	Claim netip.Prefix
	Mine  netip.Prefix
}

// Attempt is one address per range set, taken together or not at all.
type Attempt []Pick

// Span is the addresses from First to Last, inclusive, of one family.
type Span struct {
	First, Last netip.Addr
}

// NodeView is what one node's allocation starts from.
type NodeView struct {
	Held   []netip.Addr   // the addresses node recorded for the owner
	Blocks []netip.Prefix // node's blocks
	// Used are every address node allocated, in its blocks or not.
	// Another node's address inside node's blocks (borrowed, or
	// requested) is not among them.
	Used []netip.Addr
}

// Store persists one network's blocks and allocations.
type Store interface {
	// Held returns the addresses node recorded for owner.
	Held(ctx context.Context, node string, owner Attachment) ([]netip.Addr, error)
	// NodeBlocks returns the blocks node has claimed.
	NodeBlocks(ctx context.Context, node string) ([]netip.Prefix, error)
	// View returns, in one read, what an allocation starts from. Like
	// Blocks and Used it may lag the cluster by a moment (any member
	// answers): Commit checks whatever matters.
	View(ctx context.Context, node string, owner Attachment) (NodeView, error)
	// Blocks returns every claimed block; it may lag.
	Blocks(ctx context.Context) ([]Block, error)
	// Claimed reports which of blocks are claimed, by any node; it may
	// lag.
	Claimed(ctx context.Context, blocks []netip.Prefix) ([]bool, error)
	// Used returns the allocated addresses within the spans; it may lag.
	Used(ctx context.Context, spans []Span) ([]netip.Addr, error)
	// Commit records, in one transaction, the first attempt whose
	// conditions all hold as owner's allocation on node, and returns its
	// index; -1 when none holds, and nothing is written. No attempt
	// holds while node records an address for owner already.
	Commit(ctx context.Context, node string, owner Attachment, now time.Time, attempts []Attempt) (int, error)
	// Release removes owner's allocations on node and returns their
	// addresses; none is no error.
	Release(ctx context.Context, node string, owner Attachment) ([]netip.Addr, error)
	// Allocations returns node's allocations, or every allocation of the
	// network when node is "".
	Allocations(ctx context.Context, node string) ([]Allocation, error)
	// ReleaseBlocks removes node's block claims and returns them.
	ReleaseBlocks(ctx context.Context, node string) ([]netip.Prefix, error)
	// Ping returns nil when the store answers a consistent read.
	Ping(ctx context.Context) error
	// Close releases the connection.
	Close() error
}
