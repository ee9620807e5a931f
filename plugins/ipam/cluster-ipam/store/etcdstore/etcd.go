// Package etcdstore is the etcd implementation of cluster-ipam's store: a
// network's blocks and allocations as keys under a prefix (see keys.go),
// every allocation one transaction that fails when the address is taken.
//
// It speaks etcd's v3 KV API in gRPC's wire protocol without a gRPC
// library (client.go, proto.go; servers 3.4 and later) and touches
// nothing on the host.
package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
)

type attachment = store.Attachment

// Config says where the etcd cluster is and which network to hold.
type Config struct {
	Endpoints   []string // client URLs, http:// or https://
	TLS         *tls.Config
	DialTimeout time.Duration
	Prefix      string // ends with "/"
	Network     string
}

// Store is a network's store on etcd.
type Store struct {
	c *client
	k keys
}

var _ store.Store = (*Store)(nil)

// New returns the store of c.Network. It connects on the first request;
// each connection attempt waits at most c.DialTimeout.
func New(c Config) *Store {
	var eps []string
	for _, e := range c.Endpoints {
		eps = append(eps, strings.TrimSuffix(e, "/"))
	}
	return &Store{c: newClient(eps, c.TLS, c.DialTimeout), k: keys{base: c.Prefix + c.Network + "/"}}
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.c.close()
	return nil
}

type ipValue struct {
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifname"`
	Node        string    `json:"node"`
	Time        time.Time `json:"time"`
}

type blockValue struct {
	Node string    `json:"node"`
	Time time.Time `json:"time"`
}

func ipValueOf(node string, o attachment, t time.Time) string {
	b, _ := json.Marshal(ipValue{ContainerID: o.ContainerID, IfName: o.IfName, Node: node, Time: t.UTC()})
	return string(b)
}

func timeValue(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (s *Store) ownerAddrs(node string, kvs []keyValue) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, kv := range kvs {
		_, a, err := s.k.parseOwnerKey(node, string(kv.Key))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// Held implements store.Store with a linearizable read.
func (s *Store) Held(ctx context.Context, node string, owner attachment) ([]netip.Addr, error) {
	p := s.k.owner(node, owner)
	resp, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read allocations of %q: %w", owner.ContainerID, err)
	}
	return s.ownerAddrs(node, resp.Kvs)
}

// View implements store.Store with one serializable read transaction:
// the node's owner keys (the owner's addresses among them) and its
// blocks.
func (s *Store) View(ctx context.Context, node string, owner attachment) (store.NodeView, error) {
	var v store.NodeView
	resp, err := s.c.txn(ctx, txnRequest{Success: []op{
		getPrefix(s.k.owners(node), true, true),
		getPrefix(s.k.nodeBlocks(node), true, true),
	}})
	if err != nil {
		return v, fmt.Errorf("read allocations and blocks of node %q: %w", node, err)
	}
	if len(resp.Responses) != 2 || resp.Responses[0].Range == nil || resp.Responses[1].Range == nil {
		return v, fmt.Errorf("read allocations of node %q: unexpected answer %+v", node, resp)
	}
	for _, kv := range resp.Responses[0].Range.Kvs {
		o, a, err := s.k.parseOwnerKey(node, string(kv.Key))
		if err != nil {
			return v, err
		}
		v.Used = append(v.Used, a)
		if o == owner {
			v.Held = append(v.Held, a)
		}
	}
	slices.SortFunc(v.Held, netip.Addr.Compare)
	slices.SortFunc(v.Used, netip.Addr.Compare)
	if v.Blocks, err = s.parseNodeBlocks(node, resp.Responses[1].Range.Kvs); err != nil {
		return v, err
	}
	return v, nil
}

// NodeBlocks implements store.Store with a linearizable read.
func (s *Store) NodeBlocks(ctx context.Context, node string) ([]netip.Prefix, error) {
	p := s.k.nodeBlocks(node)
	resp, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read blocks of node %q: %w", node, err)
	}
	return s.parseNodeBlocks(node, resp.Kvs)
}

func (s *Store) parseNodeBlocks(node string, kvs []keyValue) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, kv := range kvs {
		p, err := netip.ParsePrefix(strings.TrimPrefix(string(kv.Key), s.k.nodeBlocks(node)))
		if err != nil {
			return nil, fmt.Errorf("block key %q: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out, nil
}

// Blocks implements store.Store with a serializable read.
func (s *Store) Blocks(ctx context.Context) ([]store.Block, error) {
	p := s.k.blocks()
	resp, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), Serializable: true})
	if err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	var out []store.Block
	for _, kv := range resp.Kvs {
		b, err := netip.ParsePrefix(strings.TrimPrefix(string(kv.Key), p))
		if err != nil {
			return nil, fmt.Errorf("block key %q: %w", kv.Key, err)
		}
		var v blockValue
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("block %s value %q: %w", b, kv.Value, err)
		}
		out = append(out, store.Block{Prefix: b, Node: v.Node, Time: v.Time})
	}
	slices.SortFunc(out, func(a, b store.Block) int { return a.Prefix.Compare(b.Prefix) })
	return out, nil
}

// Claimed implements store.Store: one serializable count of each block
// key, read together.
func (s *Store) Claimed(ctx context.Context, blocks []netip.Prefix) ([]bool, error) {
	out := make([]bool, 0, len(blocks))
	for chunk := range slices.Chunk(blocks, 64) {
		var ops []op
		for _, b := range chunk {
			ops = append(ops, op{Range: &rangeRequest{Key: []byte(s.k.block(b)), CountOnly: true, Serializable: true}})
		}
		resp, err := s.c.txn(ctx, txnRequest{Success: ops})
		if err != nil {
			return nil, fmt.Errorf("read block claims: %w", err)
		}
		if len(resp.Responses) != len(chunk) {
			return nil, fmt.Errorf("read block claims: %d answers to %d reads", len(resp.Responses), len(chunk))
		}
		for _, r := range resp.Responses {
			out = append(out, r.Range != nil && r.Range.Count > 0)
		}
	}
	return out, nil
}

// Used implements store.Store: one serializable key range per span, read
// together.
func (s *Store) Used(ctx context.Context, spans []store.Span) ([]netip.Addr, error) {
	var ops []op
	for _, sp := range spans {
		// Keys of one family have one length: the key after the last
		// address's is that key and a NUL byte.
		ops = append(ops, op{Range: &rangeRequest{Key: []byte(s.k.ip(sp.First)), RangeEnd: []byte(s.k.ip(sp.Last) + "\x00"), KeysOnly: true, Serializable: true}})
	}
	var out []netip.Addr
	for chunk := range slices.Chunk(ops, 64) {
		resp, err := s.c.txn(ctx, txnRequest{Success: chunk})
		if err != nil {
			return nil, fmt.Errorf("read allocated addresses: %w", err)
		}
		for _, r := range resp.Responses {
			if r.Range == nil {
				continue
			}
			for _, kv := range r.Range.Kvs {
				a, err := parseAddrKey(strings.TrimPrefix(string(kv.Key), s.k.ips()))
				if err != nil {
					return nil, err
				}
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// attemptTxn returns one attempt as a transaction: its conditions, its
// writes, and next as the Else branch.
func (s *Store) attemptTxn(node string, owner attachment, now time.Time, at store.Attempt, next []op) op {
	t := &txnRequest{Failure: next}
	for _, p := range at {
		ik := s.k.ip(p.IP)
		t.Compare = append(t.Compare, absent(ik))
		t.Success = append(t.Success, put(ik, ipValueOf(node, owner, now)), put(s.k.ownerIP(node, owner, p.IP), timeValue(now)))
		if p.Claim.IsValid() {
			bk := s.k.block(p.Claim)
			v, _ := json.Marshal(blockValue{Node: node, Time: now.UTC()})
			t.Compare = append(t.Compare, absent(bk))
			t.Success = append(t.Success, put(bk, string(v)), put(s.k.nodeBlock(node, p.Claim), timeValue(now)))
		}
		if p.Mine.IsValid() {
			t.Compare = append(t.Compare, present(s.k.nodeBlock(node, p.Mine)))
		}
	}
	return op{Txn: t}
}

// Commit implements store.Store as one transaction. Its If holds while
// the attachment has no address yet: reads may lag, and a retried ADD
// that read before its first write landed must not get a second one. Its
// Then is the first attempt, a transaction whose Else nests the next
// attempt, and so on: a contested address costs no further round trip or
// proposal. Sent again after a lost answer, it writes nothing twice.
func (s *Store) Commit(ctx context.Context, node string, owner attachment, now time.Time, attempts []store.Attempt) (int, error) {
	if len(attempts) == 0 {
		return -1, nil
	}
	var chain []op
	for i := len(attempts) - 1; i >= 0; i-- {
		chain = []op{s.attemptTxn(node, owner, now, attempts[i], chain)}
	}
	resp, err := s.c.txn(ctx, txnRequest{Compare: []compare{noneUnder(s.k.owner(node, owner))}, Success: chain})
	if err != nil {
		return -1, fmt.Errorf("allocate for %q: %w", owner.ContainerID, err)
	}
	if !resp.Succeeded {
		return -1, nil
	}
	rs := resp.Responses
	for i := 0; len(rs) == 1 && rs[0].Txn != nil; i++ {
		if rs[0].Txn.Succeeded {
			return i, nil
		}
		rs = rs[0].Txn.Responses
	}
	return -1, nil
}

// Release implements store.Store. The address keys are deleted only while
// they still name owner (compared by value, rebuilt from the owner keys);
// when one does not, it is read and left alone if another holds it.
func (s *Store) Release(ctx context.Context, node string, owner attachment) ([]netip.Addr, error) {
	p := s.k.owner(node, owner)
	resp, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("read allocations of %q: %w", owner.ContainerID, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var ips []netip.Addr
	t := txnRequest{Success: []op{delPrefix(p)}}
	for _, kv := range resp.Kvs {
		_, a, err := s.k.parseOwnerKey(node, string(kv.Key))
		if err != nil {
			return nil, err
		}
		at, err := time.Parse(time.RFC3339Nano, string(kv.Value))
		if err != nil {
			return nil, fmt.Errorf("owner key %q value %q: %w", kv.Key, kv.Value, err)
		}
		ips = append(ips, a)
		t.Compare = append(t.Compare, valueIs(s.k.ip(a), ipValueOf(node, owner, at)))
		t.Success = append(t.Success, del(s.k.ip(a)))
	}
	tr, err := s.c.txn(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("release %q: %w", owner.ContainerID, err)
	}
	if !tr.Succeeded {
		if err := s.releaseChecked(ctx, node, owner, ips); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, nil
}

// releaseChecked deletes owner's keys on node and those of ips that still
// name owner, read one by one: the slow path of Release.
func (s *Store) releaseChecked(ctx context.Context, node string, owner attachment, ips []netip.Addr) error {
	t := txnRequest{Success: []op{delPrefix(s.k.owner(node, owner))}}
	for _, a := range ips {
		r, err := s.c.get(ctx, rangeRequest{Key: []byte(s.k.ip(a))})
		if err != nil {
			return fmt.Errorf("read %s: %w", a, err)
		}
		if len(r.Kvs) == 0 {
			continue
		}
		var v ipValue
		if json.Unmarshal(r.Kvs[0].Value, &v) != nil || v.Node != node || v.ContainerID != owner.ContainerID || v.IfName != owner.IfName {
			continue
		}
		t.Compare = append(t.Compare, modIs(s.k.ip(a), r.Kvs[0].ModRevision))
		t.Success = append(t.Success, del(s.k.ip(a)))
	}
	tr, err := s.c.txn(ctx, t)
	if err != nil {
		return fmt.Errorf("release %q: %w", owner.ContainerID, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("release %q: its addresses changed during release: %w", owner.ContainerID, store.ErrUnavailable)
	}
	return nil
}

// Allocations implements store.Store: node's from its owner keys, or
// every address key, with linearizable reads.
func (s *Store) Allocations(ctx context.Context, node string) ([]store.Allocation, error) {
	var out []store.Allocation
	if node != "" {
		p := s.k.owners(node)
		resp, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)})
		if err != nil {
			return nil, fmt.Errorf("read allocations of node %q: %w", node, err)
		}
		for _, kv := range resp.Kvs {
			o, a, err := s.k.parseOwnerKey(node, string(kv.Key))
			if err != nil {
				return nil, err
			}
			t, _ := time.Parse(time.RFC3339Nano, string(kv.Value))
			out = append(out, store.Allocation{IP: a, Owner: o, Node: node, Time: t})
		}
	} else {
		p := s.k.ips()
		resp, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p)})
		if err != nil {
			return nil, fmt.Errorf("read allocations: %w", err)
		}
		for _, kv := range resp.Kvs {
			a, err := parseAddrKey(strings.TrimPrefix(string(kv.Key), p))
			if err != nil {
				return nil, err
			}
			var v ipValue
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				return nil, fmt.Errorf("address %s value %q: %w", a, kv.Value, err)
			}
			out = append(out, store.Allocation{IP: a, Owner: attachment{ContainerID: v.ContainerID, IfName: v.IfName}, Node: v.Node, Time: v.Time})
		}
	}
	slices.SortFunc(out, func(a, b store.Allocation) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// ReleaseBlocks implements store.Store.
func (s *Store) ReleaseBlocks(ctx context.Context, node string) ([]netip.Prefix, error) {
	blocks, err := s.NodeBlocks(ctx, node)
	if err != nil {
		return nil, err
	}
	for chunk := range slices.Chunk(blocks, 50) {
		var ops []op
		for _, b := range chunk {
			ops = append(ops, del(s.k.block(b)), del(s.k.nodeBlock(node, b)))
		}
		if _, err := s.c.txn(ctx, txnRequest{Success: ops}); err != nil {
			return nil, fmt.Errorf("release blocks of node %q: %w", node, err)
		}
	}
	return blocks, nil
}

// Ping implements store.Store with a linearizable read, which needs a
// quorum.
func (s *Store) Ping(ctx context.Context) error {
	p := s.k.blocks()
	if _, err := s.c.get(ctx, rangeRequest{Key: []byte(p), RangeEnd: prefixEnd(p), CountOnly: true}); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}
