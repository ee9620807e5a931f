// Package hostlocal implements the host-local IPAM verbs (ADD, DEL, CHECK,
// GC, STATUS) over a lease store: configuration parsing, requested
// addresses, results and their CNI error codes. The host-local binary wires
// it to pluginmain; the ipvlan plugin runs it in its own process when its ipam
// type is host-local, saving a process start per verb. It touches no
// network namespace and needs only write access to the data directory.
package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/resultjson"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store/disk"
)

// Plugin-specific error codes (the spec leaves 100 and up to plugins).
const (
	// errLeaseMissing: CHECK found an address of prevResult, or any
	// address at all, not leased to the attachment.
	errLeaseMissing uint = 100
	// errAlreadyLeased: ADD for an attachment that already holds an
	// address in a range set (a second ADD without DEL).
	errAlreadyLeased uint = 101
)

// Plugin carries the host-local verbs, each taking a context that bounds
// the wait for the network's lock and the arguments a plugin is given.
// Open returns the lease store of a network; Out receives printed results
// (os.Stdout when nil).
type Plugin struct {
	Open func(dataDir, network string) (store.Store, error)
	Out  io.Writer
}

// OnDisk is the plugin with its leases on disk, in the reference format.
// logf receives a line for every lease file the store skips, and for a
// call served from a scan because the index could not be written.
func OnDisk(logf func(format string, args ...any)) Plugin {
	return Plugin{Open: func(dataDir, network string) (store.Store, error) {
		return disk.New(dataDir, network, logf)
	}}
}

// withAllocator opens the network's lease store, runs fn with an
// allocator over it, and closes the store.
func (p Plugin) withAllocator(c *Config, fn func(*allocator.Allocator) error) error {
	st, err := p.Open(c.DataDir, c.Name)
	if err != nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("open lease store of network %q in dataDir %q: %v", c.Name, c.DataDir, err), "")
	}
	defer st.Close()
	return fn(allocator.New(st, c.RangeSets))
}

// cniError gives an allocator or store error its CNI code.
func cniError(err error) *types.Error {
	var (
		te *types.Error
		ex *allocator.ExhaustedError
		tk *allocator.TakenError
		un *allocator.UnusableError
		du *allocator.DuplicateError
	)
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// Another process holds the network's lock (a hung plugin, say).
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	case errors.As(err, &ex):
		// The pool frees up as containers go: the runtime may retry.
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	case errors.As(err, &tk):
		// The holder may be a container being deleted.
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	case errors.As(err, &un):
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	case errors.As(err, &du):
		return types.NewError(errAlreadyLeased, err.Error(), "")
	}
	return types.NewError(types.ErrIOFailure, err.Error(), "")
}

func (p Plugin) print(out []byte) error {
	w := p.Out
	if w == nil {
		w = os.Stdout
	}
	_, err := w.Write(out)
	return err
}

// Add leases one address per range set and prints the result in the
// config's cniVersion.
func (p Plugin) Add(ctx context.Context, args *pluginmain.CmdArgs) error {
	return p.add(ctx, args, func(c *Config, result *current.Result) error {
		out, err := resultjson.Encode(result, c.CNIVersion)
		if err != nil {
			return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("convert result to cniVersion %q: %v", c.CNIVersion, err), "")
		}
		if err := p.print(out); err != nil {
			return types.NewError(types.ErrIOFailure, fmt.Sprintf("print result: %v", err), "")
		}
		return nil
	})
}

// AddResult leases like Add and returns the result, in the current result
// version, instead of printing it: for a plugin that runs host-local in its
// own process.
func (p Plugin) AddResult(ctx context.Context, args *pluginmain.CmdArgs) (*current.Result, error) {
	var res *current.Result
	err := p.add(ctx, args, func(_ *Config, result *current.Result) error {
		res = result
		return nil
	})
	return res, err
}

// add leases the addresses and hands the result to emit; when emit fails
// the leases are released.
func (p Plugin) add(ctx context.Context, args *pluginmain.CmdArgs, emit func(*Config, *current.Result) error) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	requested, err := c.RequestedBySet()
	if err != nil {
		return err
	}
	result := &current.Result{CNIVersion: current.ImplementedSpecVersion, Routes: c.Routes}
	if c.ResolvConf != "" {
		if result.DNS, err = readResolvConf(c.ResolvConf); err != nil {
			return types.NewError(types.ErrIOFailure, fmt.Sprintf("ipam.resolvConf %q: %v", c.ResolvConf, err), "")
		}
	}
	owner := store.NewAttachment(args.ContainerID, args.IfName)
	return p.withAllocator(c, func(a *allocator.Allocator) error {
		return allocate(ctx, a, owner, requested, result, func() error { return emit(c, result) })
	})
}

// allocate leases the addresses, fills result and calls emit; on any
// failure after the leases were taken it releases them.
func allocate(ctx context.Context, a *allocator.Allocator, owner store.Attachment, requested map[int]netip.Addr, result *current.Result, emit func() error) (err error) {
	allocs, err := a.Allocate(ctx, owner, requested)
	if err != nil {
		return cniError(err)
	}
	// From here a failure must not leave the leases behind.
	defer func() {
		if err != nil {
			if _, rerr := a.Release(ctx, owner); rerr != nil {
				err = types.NewError(types.ErrIOFailure, fmt.Sprintf("%v; release leases: %v", err, rerr), "")
			}
		}
	}()
	for _, al := range allocs {
		ip := al.Address.Addr()
		result.IPs = append(result.IPs, &current.IPConfig{
			Address: net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(al.Address.Bits(), ip.BitLen())},
			Gateway: al.Gateway.AsSlice(),
		})
	}
	return emit()
}

// Del releases every lease of the attachment; none is success.
func (p Plugin) Del(ctx context.Context, args *pluginmain.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	return p.withAllocator(c, func(a *allocator.Allocator) error {
		if _, err := a.Release(ctx, store.NewAttachment(args.ContainerID, args.IfName)); err != nil {
			return cniError(err)
		}
		return nil
	})
}

// Check verifies that the attachment holds a lease for every address of
// prevResult, or for at least one address when there is no prevResult.
func (p Plugin) Check(ctx context.Context, args *pluginmain.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	prev, hasPrev, err := prevResultAddrs(args.StdinData)
	if err != nil {
		return err
	}
	owner := store.NewAttachment(args.ContainerID, args.IfName)
	var held []netip.Addr
	if err := p.withAllocator(c, func(a *allocator.Allocator) (err error) {
		held, err = a.Lookup(ctx, owner)
		return err
	}); err != nil {
		return cniError(err)
	}
	if !hasPrev {
		if len(held) == 0 {
			return types.NewError(errLeaseMissing, fmt.Sprintf("container %q interface %q holds no lease in network %q", owner.ContainerID, owner.IfName, c.Name), "")
		}
		return nil
	}
	have := map[netip.Addr]bool{}
	for _, ip := range held {
		have[ip] = true
	}
	var missing []string
	for _, ip := range prev {
		if !have[ip] {
			missing = append(missing, ip.String())
		}
	}
	if len(missing) > 0 {
		return types.NewError(errLeaseMissing, fmt.Sprintf("prevResult address %s is not leased to container %q interface %q in network %q",
			strings.Join(missing, ", "), owner.ContainerID, owner.IfName, c.Name), "")
	}
	return nil
}

// GC releases every lease whose attachment is not in
// cni.dev/valid-attachments. Without that key it refuses, rather than
// release every lease.
func (p Plugin) GC(ctx context.Context, args *pluginmain.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if !c.HasValidAttachments {
		return types.NewError(types.ErrInvalidNetworkConfig, "cni.dev/valid-attachments is missing: refusing to release every lease", "")
	}
	return p.withAllocator(c, func(a *allocator.Allocator) error {
		if _, err := a.GC(ctx, c.ValidAttachments); err != nil {
			return cniError(err)
		}
		return nil
	})
}

// Status fails with code 50 when a range set has no free address.
func (p Plugin) Status(ctx context.Context, args *pluginmain.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	err = p.withAllocator(c, func(a *allocator.Allocator) error { return a.Status(ctx) })
	var ex *allocator.ExhaustedError
	if errors.As(err, &ex) {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("network %q: %v", c.Name, err), "")
	}
	if err != nil {
		return cniError(err)
	}
	return nil
}
