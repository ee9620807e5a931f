// Package clusteripam implements the cluster-ipam verbs (ADD, DEL, CHECK,
// GC, STATUS) and its operator commands (show, release-node) over a
// store.Store on etcd: configuration parsing, results and their CNI error
// codes. It touches no network namespace and needs no privilege; it needs
// the etcd cluster named in the configuration.
package clusteripam

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/resultjson"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/blocks"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store/etcdstore"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
	hlstore "github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// Plugin-specific error codes, host-local's.
const (
	// errNotHeld: CHECK found an address of prevResult, or any address
	// at all, not allocated to the attachment.
	errNotHeld uint = 100
	// errAlreadyHeld: ADD for an attachment that holds addresses that do
	// not match this ADD's range sets or requests.
	errAlreadyHeld uint = 101
)

// Plugin carries the cluster-ipam verbs, each taking the arguments pluginmain
// passes a plugin. Open connects to a network's store; Out receives
// printed results (os.Stdout when nil); Hostname gives the default node
// name; Now the time recorded with allocations.
type Plugin struct {
	Open     func(ctx context.Context, c *Config) (store.Store, error)
	Out      io.Writer
	Hostname func() (string, error)
	Now      func() time.Time
}

// OnEtcd is the plugin with its store on the configured etcd cluster.
func OnEtcd() Plugin {
	return Plugin{
		Open: func(ctx context.Context, c *Config) (store.Store, error) {
			return etcdstore.New(etcdstore.Config{
				Endpoints:   c.Etcd.Endpoints,
				TLS:         c.Etcd.TLS,
				DialTimeout: c.Etcd.DialTimeout,
				Prefix:      c.Etcd.Prefix,
				Network:     c.Name,
			}), nil
		},
		Hostname: os.Hostname,
		Now:      time.Now,
	}
}

// unavailable is the error of a store that did not answer: code 11, so
// that the runtime retries.
func unavailable(c *Config, err error) *types.Error {
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("etcd %s: %v", strings.Join(c.Etcd.Endpoints, ","), err), "")
}

// cniError gives an allocator or store error its CNI code.
func cniError(c *Config, err error) *types.Error {
	var (
		te *types.Error
		ex *allocator.ExhaustedError
		tk *allocator.TakenError
		du *allocator.DuplicateError
		cf *blocks.ConflictError
	)
	switch {
	case errors.As(err, &te):
		return te
	case errors.As(err, &ex), errors.As(err, &tk), errors.As(err, &cf):
		// Addresses free up as containers go: the runtime may retry.
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("network %q: %v", c.Name, err), "")
	case errors.As(err, &du):
		return types.NewError(errAlreadyHeld, fmt.Sprintf("network %q: %v", c.Name, err), "")
	}
	return unavailable(c, err)
}

// withStore parses the config, connects to its store within the config's
// dialTimeout, and runs fn under one deadline of that length.
func (p Plugin) withStore(args *pluginmain.CmdArgs, fn func(ctx context.Context, c *Config, st store.Store) error) error {
	c, err := ParseConfig(args.StdinData, args.Args, p.Hostname)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout())
	defer cancel()
	st, err := p.Open(ctx, c)
	if err != nil {
		return unavailable(c, err)
	}
	defer st.Close()
	return fn(ctx, c, st)
}

// retryPause is the pause before asking an unavailable store again.
const retryPause = 100 * time.Millisecond

// release releases owner's addresses on node, again while the store is
// unavailable: releasing twice is releasing once.
func release(ctx context.Context, st store.Store, node string, owner store.Attachment) error {
	return store.Retry(ctx, retryPause, func() error {
		_, err := st.Release(ctx, node, owner)
		return err
	})
}

func (p Plugin) allocator(c *Config, st store.Store) *blocks.Allocator {
	return &blocks.Allocator{Store: st, Sets: c.RangeSets, BlockBits: c.BlockBits, Node: c.Node, Now: p.Now}
}

// Add allocates one address per range set and prints the result in the
// config's cniVersion. An attachment that holds addresses already (an ADD
// retried after a timeout) gets them again.
func (p Plugin) Add(args *pluginmain.CmdArgs) error {
	return p.withStore(args, func(ctx context.Context, c *Config, st store.Store) (err error) {
		requested, err := c.RequestedBySet()
		if err != nil {
			return err
		}
		result := &current.Result{CNIVersion: current.ImplementedSpecVersion, Routes: c.Routes}
		if c.ResolvConf != "" {
			if result.DNS, err = hostlocal.ReadResolvConf(c.ResolvConf); err != nil {
				return types.NewError(types.ErrIOFailure, fmt.Sprintf("ipam.resolvConf %q: %v", c.ResolvConf, err), "")
			}
		}
		owner := hlstore.NewAttachment(args.ContainerID, args.IfName)
		// Allocate starts by reading what owner holds, so a retry after a
		// write whose outcome was lost returns that write's addresses.
		var allocs []blocks.Allocated
		err = store.Retry(ctx, retryPause, func() (err error) {
			allocs, err = p.allocator(c, st).Allocate(ctx, owner, requested)
			return err
		})
		if err != nil {
			return cniError(c, err)
		}
		defer func() {
			if err != nil {
				if rerr := release(ctx, st, c.Node, owner); rerr != nil {
					err = types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%v; release addresses: %v", err, rerr), "")
				}
			}
		}()
		for _, al := range allocs {
			result.IPs = append(result.IPs, &current.IPConfig{
				Address: net.IPNet{IP: al.IP.AsSlice(), Mask: net.CIDRMask(al.Range.Subnet.Bits(), al.IP.BitLen())},
				Gateway: al.Range.Gateway.AsSlice(),
			})
		}
		out, err := resultjson.Encode(result, c.CNIVersion)
		if err != nil {
			return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("convert result to cniVersion %q: %v", c.CNIVersion, err), "")
		}
		w := p.Out
		if w == nil {
			w = os.Stdout
		}
		if _, err := w.Write(out); err != nil {
			return types.NewError(types.ErrIOFailure, fmt.Sprintf("print result: %v", err), "")
		}
		return nil
	})
}

// Del releases the attachment's addresses on this node; none is success.
func (p Plugin) Del(args *pluginmain.CmdArgs) error {
	return p.withStore(args, func(ctx context.Context, c *Config, st store.Store) error {
		if err := release(ctx, st, c.Node, hlstore.NewAttachment(args.ContainerID, args.IfName)); err != nil {
			return cniError(c, err)
		}
		return nil
	})
}

// Check verifies that the attachment holds every address of prevResult,
// or at least one address when there is none.
func (p Plugin) Check(args *pluginmain.CmdArgs) error {
	prev, hasPrev, err := hostlocal.PrevResultAddrs(args.StdinData)
	if err != nil {
		return err
	}
	return p.withStore(args, func(ctx context.Context, c *Config, st store.Store) error {
		owner := hlstore.NewAttachment(args.ContainerID, args.IfName)
		var held []netip.Addr
		err := store.Retry(ctx, retryPause, func() (err error) {
			held, err = st.Held(ctx, c.Node, owner)
			return err
		})
		if err != nil {
			return cniError(c, err)
		}
		if !hasPrev {
			if len(held) == 0 {
				return types.NewError(errNotHeld, fmt.Sprintf("container %q interface %q holds no address in network %q on node %q", owner.ContainerID, owner.IfName, c.Name, c.Node), "")
			}
			return nil
		}
		var missing []string
		for _, ip := range prev {
			if !containsAddr(held, ip) {
				missing = append(missing, ip.String())
			}
		}
		if len(missing) > 0 {
			return types.NewError(errNotHeld, fmt.Sprintf("prevResult address %s is not allocated to container %q interface %q in network %q on node %q",
				strings.Join(missing, ", "), owner.ContainerID, owner.IfName, c.Name, c.Node), "")
		}
		return nil
	})
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if a == b {
			return true
		}
	}
	return false
}

// GC releases this node's allocations whose attachment is not in
// cni.dev/valid-attachments; never another node's. Without that key it
// refuses, rather than release every allocation.
func (p Plugin) GC(args *pluginmain.CmdArgs) error {
	return p.withStore(args, func(ctx context.Context, c *Config, st store.Store) error {
		if !c.HasValidAttachments {
			return types.NewError(types.ErrInvalidNetworkConfig, "cni.dev/valid-attachments is missing: refusing to release every allocation", "")
		}
		valid := map[store.Attachment]bool{}
		for _, a := range c.ValidAttachments {
			valid[a] = true
		}
		var allocs []store.Allocation
		err := store.Retry(ctx, retryPause, func() (err error) {
			allocs, err = st.Allocations(ctx, c.Node)
			return err
		})
		if err != nil {
			return cniError(c, err)
		}
		done := map[store.Attachment]bool{}
		for _, al := range allocs {
			if valid[al.Owner] || done[al.Owner] {
				continue
			}
			done[al.Owner] = true
			if err := release(ctx, st, c.Node, al.Owner); err != nil {
				return cniError(c, err)
			}
		}
		return nil
	})
}

// Status fails with code 50, naming the endpoints, when the cluster does
// not answer a consistent read within dialTimeout.
func (p Plugin) Status(args *pluginmain.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args, p.Hostname)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout())
	defer cancel()
	notAvailable := func(err error) error {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("etcd %s did not answer within %v: %v", strings.Join(c.Etcd.Endpoints, ","), c.Timeout(), err), "")
	}
	st, err := p.Open(ctx, c)
	if err != nil {
		return notAvailable(err)
	}
	defer st.Close()
	if err := store.Retry(ctx, retryPause, func() error { return st.Ping(ctx) }); err != nil {
		return notAvailable(err)
	}
	return nil
}
