package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
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

// plugin carries the CNI verbs. open returns the lease store of a network;
// out receives results (os.Stdout when nil).
type plugin struct {
	open func(dataDir, network string) (store.Store, error)
	out  io.Writer
}

// withAllocator opens the network's lease store, runs fn with an
// allocator over it, and closes the store.
func (p plugin) withAllocator(c *Config, fn func(*allocator.Allocator) error) error {
	st, err := p.open(c.DataDir, c.Name)
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

func (p plugin) print(r types.Result) error {
	w := p.out
	if w == nil {
		w = os.Stdout
	}
	return r.PrintTo(w)
}

// add leases one address per range set and prints the result in the
// config's cniVersion.
func (p plugin) add(args *skel.CmdArgs) error {
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
		return p.allocate(a, c, owner, requested, result)
	})
}

// allocate leases the addresses, fills result and prints it; on any
// failure after the leases were taken it releases them.
func (p plugin) allocate(a *allocator.Allocator, c *Config, owner store.Attachment, requested map[int]netip.Addr, result *current.Result) (err error) {
	allocs, err := a.Allocate(owner, requested)
	if err != nil {
		return cniError(err)
	}
	// From here a failure must not leave the leases behind.
	defer func() {
		if err != nil {
			if _, rerr := a.Release(owner); rerr != nil {
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
	out, err := result.GetAsVersion(c.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("convert result to cniVersion %q: %v", c.CNIVersion, err), "")
	}
	if err := p.print(out); err != nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("print result: %v", err), "")
	}
	return nil
}

// del releases every lease of the attachment; none is success.
func (p plugin) del(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	return p.withAllocator(c, func(a *allocator.Allocator) error {
		if _, err := a.Release(store.NewAttachment(args.ContainerID, args.IfName)); err != nil {
			return cniError(err)
		}
		return nil
	})
}

// check verifies that the attachment holds a lease for every address of
// prevResult, or for at least one address when there is no prevResult.
func (p plugin) check(args *skel.CmdArgs) error {
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
		held, err = a.Lookup(owner)
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

// gc releases every lease whose attachment is not in
// cni.dev/valid-attachments. Without that key it refuses, rather than
// release every lease.
func (p plugin) gc(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if !c.HasValidAttachments {
		return types.NewError(types.ErrInvalidNetworkConfig, "cni.dev/valid-attachments is missing: refusing to release every lease", "")
	}
	return p.withAllocator(c, func(a *allocator.Allocator) error {
		if _, err := a.GC(c.ValidAttachments); err != nil {
			return cniError(err)
		}
		return nil
	})
}

// status fails with code 50 when a range set has no free address.
func (p plugin) status(args *skel.CmdArgs) error {
	c, err := ParseConfig(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	err = p.withAllocator(c, func(a *allocator.Allocator) error { return a.Status() })
	var ex *allocator.ExhaustedError
	if errors.As(err, &ex) {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("network %q: %v", c.Name, err), "")
	}
	if err != nil {
		return cniError(err)
	}
	return nil
}
