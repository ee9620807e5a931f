// Package etcdstore is the etcd implementation of cluster-ipam's store: a
// network's blocks and allocations as keys under a prefix (see keys.go),
// every allocation one transaction that fails when the address is taken.
//
// It speaks etcd's v3 API over gRPC (servers 3.4 and later) and touches
// nothing on the host.
package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
)

type attachment = store.Attachment

// Config says where the etcd cluster is and which network to hold.
type Config struct {
	Endpoints   []string
	TLS         *tls.Config // nil for plain http endpoints
	DialTimeout time.Duration
	Prefix      string // ends with "/"
	Network     string
}

// Store is a network's store on etcd.
type Store struct {
	cli *clientv3.Client
	k   keys
}

var _ store.Store = (*Store)(nil)

// New connects to the cluster, waiting at most c.DialTimeout (or until ctx
// ends) for one member to answer.
func New(ctx context.Context, c Config) (*Store, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		TLS:         c.TLS,
		DialTimeout: c.DialTimeout,
		Context:     ctx,
		Logger:      zap.NewNop(),
		// Fail in New, within DialTimeout, when no member answers.
		DialOptions: []grpc.DialOption{grpc.WithBlock()},
	})
	if err != nil {
		return nil, wrap(err, "connect to etcd %v", c.Endpoints)
	}
	return &Store{cli: cli, k: keys{base: c.Prefix + c.Network + "/"}}, nil
}

// Close implements store.Store.
func (s *Store) Close() error { return s.cli.Close() }

// wrap marks err with store.ErrUnavailable when etcd may answer if asked
// again (codes.Unavailable: no leader, leader changed, request timed out,
// connection lost).
func wrap(err error, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	var ee rpctypes.EtcdError
	if (errors.As(err, &ee) && ee.Code() == codes.Unavailable) || status.Code(err) == codes.Unavailable {
		return fmt.Errorf("%s: %w", msg, errors.Join(store.ErrUnavailable, err))
	}
	return fmt.Errorf("%s: %w", msg, err)
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

// Held implements store.Store.
func (s *Store) Held(ctx context.Context, node string, owner attachment) ([]netip.Addr, error) {
	resp, err := s.cli.Get(ctx, s.k.owner(node, owner), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, wrap(err, "read allocations of %q", owner.ContainerID)
	}
	var out []netip.Addr
	for _, kv := range resp.Kvs {
		_, a, err := s.k.parseOwnerKey(node, string(kv.Key))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// View implements store.Store with one serializable read transaction.
func (s *Store) View(ctx context.Context, node string, owner attachment) ([]netip.Addr, []netip.Prefix, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.k.owner(node, owner), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable()),
		clientv3.OpGet(s.k.nodeBlocks(node), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable()),
	).Commit()
	if err != nil {
		return nil, nil, wrap(err, "read allocations of %q and blocks of node %q", owner.ContainerID, node)
	}
	var held []netip.Addr
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		_, a, err := s.k.parseOwnerKey(node, string(kv.Key))
		if err != nil {
			return nil, nil, err
		}
		held = append(held, a)
	}
	blocks, err := s.parseNodeBlocks(node, resp.Responses[1].GetResponseRange().Kvs)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(held, netip.Addr.Compare)
	return held, blocks, nil
}

// NodeBlocks implements store.Store.
func (s *Store) NodeBlocks(ctx context.Context, node string) ([]netip.Prefix, error) {
	resp, err := s.cli.Get(ctx, s.k.nodeBlocks(node), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, wrap(err, "read blocks of node %q", node)
	}
	return s.parseNodeBlocks(node, resp.Kvs)
}

func (s *Store) parseNodeBlocks(node string, kvs []*mvccpb.KeyValue) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, kv := range kvs {
		p, err := netip.ParsePrefix(string(kv.Key[len(s.k.nodeBlocks(node)):]))
		if err != nil {
			return nil, fmt.Errorf("block key %q: %w", kv.Key, err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, netip.Prefix.Compare)
	return out, nil
}

// Blocks implements store.Store.
func (s *Store) Blocks(ctx context.Context) ([]store.Block, error) {
	resp, err := s.cli.Get(ctx, s.k.blocks(), clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, wrap(err, "read blocks")
	}
	var out []store.Block
	for _, kv := range resp.Kvs {
		p, err := netip.ParsePrefix(string(kv.Key[len(s.k.blocks()):]))
		if err != nil {
			return nil, wrap(err, "block key %q", kv.Key)
		}
		var v blockValue
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, wrap(err, "block %s value %q", p, kv.Value)
		}
		out = append(out, store.Block{Prefix: p, Node: v.Node, Time: v.Time})
	}
	slices.SortFunc(out, func(a, b store.Block) int { return a.Prefix.Compare(b.Prefix) })
	return out, nil
}

// Used implements store.Store: one key range per span, read together.
func (s *Store) Used(ctx context.Context, spans []store.Span) ([]netip.Addr, error) {
	if len(spans) == 0 {
		return nil, nil
	}
	var ops []clientv3.Op
	for _, sp := range spans {
		// Keys of one family have one length: the key after the last
		// address's is that key and a NUL byte.
		ops = append(ops, clientv3.OpGet(s.k.ip(sp.First), clientv3.WithRange(s.k.ip(sp.Last)+"\x00"), clientv3.WithKeysOnly(), clientv3.WithSerializable()))
	}
	var out []netip.Addr
	for chunk := range slices.Chunk(ops, 64) {
		resp, err := s.cli.Txn(ctx).Then(chunk...).Commit()
		if err != nil {
			return nil, wrap(err, "read allocated addresses")
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				a, err := parseAddrKey(string(kv.Key[len(s.k.ips()):]))
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

// attemptTxn returns the conditions and writes of one attempt.
func (s *Store) attemptTxn(node string, owner attachment, now time.Time, at store.Attempt) ([]clientv3.Cmp, []clientv3.Op) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, p := range at {
		ik := s.k.ip(p.IP)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ik), "=", 0))
		ops = append(ops,
			clientv3.OpPut(ik, ipValueOf(node, owner, now)),
			clientv3.OpPut(s.k.ownerIP(node, owner, p.IP), timeValue(now)))
		if p.Claim.IsValid() {
			bk := s.k.block(p.Claim)
			v, _ := json.Marshal(blockValue{Node: node, Time: now.UTC()})
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(bk), "=", 0))
			ops = append(ops, clientv3.OpPut(bk, string(v)), clientv3.OpPut(s.k.nodeBlock(node, p.Claim), timeValue(now)))
		}
		if p.Mine.IsValid() {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.k.nodeBlock(node, p.Mine)), ">", 0))
		}
	}
	return cmps, ops
}

// Commit implements store.Store as one transaction. Its If holds while
// the attachment has no address yet: reads may lag, and a retried ADD
// that read before its first write landed must not get a second one (a
// compare over a range holds when every key in it does, and when there is
// none). Its Then is the first attempt, a transaction whose Else nests the
// next attempt, and so on: a contested address costs no further round
// trip or proposal.
func (s *Store) Commit(ctx context.Context, node string, owner attachment, now time.Time, attempts []store.Attempt) (int, error) {
	if len(attempts) == 0 {
		return -1, nil
	}
	var chain []clientv3.Op
	for i := len(attempts) - 1; i >= 0; i-- {
		cmps, ops := s.attemptTxn(node, owner, now, attempts[i])
		chain = []clientv3.Op{clientv3.OpTxn(cmps, ops, chain)}
	}
	guard := clientv3.Compare(clientv3.CreateRevision(s.k.owner(node, owner)), "=", 0).WithPrefix()
	resp, err := s.cli.Txn(ctx).If(guard).Then(chain...).Commit()
	if err != nil {
		return -1, wrap(err, "allocate for %q", owner.ContainerID)
	}
	if !resp.Succeeded {
		return -1, nil
	}
	rs := resp.Responses
	for i := 0; len(rs) == 1; i++ {
		nested := rs[0].GetResponseTxn()
		if nested == nil {
			break
		}
		if nested.Succeeded {
			return i, nil
		}
		rs = nested.Responses
	}
	return -1, nil
}

// Release implements store.Store. The address keys are deleted only while
// they still name owner (compared by value, rebuilt from the owner keys);
// when one does not, it is read and left alone if another holds it.
func (s *Store) Release(ctx context.Context, node string, owner attachment) ([]netip.Addr, error) {
	resp, err := s.cli.Get(ctx, s.k.owner(node, owner), clientv3.WithPrefix())
	if err != nil {
		return nil, wrap(err, "read allocations of %q", owner.ContainerID)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var ips []netip.Addr
	var cmps []clientv3.Cmp
	ops := []clientv3.Op{clientv3.OpDelete(s.k.owner(node, owner), clientv3.WithPrefix())}
	for _, kv := range resp.Kvs {
		_, a, err := s.k.parseOwnerKey(node, string(kv.Key))
		if err != nil {
			return nil, err
		}
		t, err := time.Parse(time.RFC3339Nano, string(kv.Value))
		if err != nil {
			return nil, wrap(err, "owner key %q value %q", kv.Key, kv.Value)
		}
		ips = append(ips, a)
		cmps = append(cmps, clientv3.Compare(clientv3.Value(s.k.ip(a)), "=", ipValueOf(node, owner, t)))
		ops = append(ops, clientv3.OpDelete(s.k.ip(a)))
	}
	tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, wrap(err, "release %q", owner.ContainerID)
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
	var cmps []clientv3.Cmp
	ops := []clientv3.Op{clientv3.OpDelete(s.k.owner(node, owner), clientv3.WithPrefix())}
	for _, a := range ips {
		r, err := s.cli.Get(ctx, s.k.ip(a))
		if err != nil {
			return wrap(err, "read %s", a)
		}
		if len(r.Kvs) == 0 {
			continue
		}
		var v ipValue
		if json.Unmarshal(r.Kvs[0].Value, &v) != nil || v.Node != node || v.ContainerID != owner.ContainerID || v.IfName != owner.IfName {
			continue
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.k.ip(a)), "=", r.Kvs[0].ModRevision))
		ops = append(ops, clientv3.OpDelete(s.k.ip(a)))
	}
	tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return wrap(err, "release %q", owner.ContainerID)
	}
	if !tr.Succeeded {
		return fmt.Errorf("release %q: its addresses changed during release", owner.ContainerID)
	}
	return nil
}

// Allocations implements store.Store: node's from its owner keys, or
// every address key.
func (s *Store) Allocations(ctx context.Context, node string) ([]store.Allocation, error) {
	var out []store.Allocation
	if node != "" {
		resp, err := s.cli.Get(ctx, s.k.owners(node), clientv3.WithPrefix())
		if err != nil {
			return nil, wrap(err, "read allocations of node %q", node)
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
		resp, err := s.cli.Get(ctx, s.k.ips(), clientv3.WithPrefix())
		if err != nil {
			return nil, wrap(err, "read allocations")
		}
		for _, kv := range resp.Kvs {
			a, err := parseAddrKey(string(kv.Key[len(s.k.ips()):]))
			if err != nil {
				return nil, err
			}
			var v ipValue
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				return nil, wrap(err, "address %s value %q", a, kv.Value)
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
		var ops []clientv3.Op
		for _, b := range chunk {
			ops = append(ops, clientv3.OpDelete(s.k.block(b)), clientv3.OpDelete(s.k.nodeBlock(node, b)))
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return nil, wrap(err, "release blocks of node %q", node)
		}
	}
	return blocks, nil
}

// Ping implements store.Store with a linearizable read, which needs a
// quorum.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.cli.Get(ctx, s.k.blocks(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}
