//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

// cmdDel removes the container's link and releases its lease. It is best
// effort and idempotent: a missing namespace, link or master is success,
// and IPAM is always asked to release.
func cmdDel(args *pluginmain.CmdArgs) error {
	return del(args, startLinkDeletion(args.Netns, args.IfName))
}

// del releases the lease while the link's deletion d runs, and reports
// both. Deleting the link needs nothing from the configuration and is the
// longest part of DEL (the kernel waits for RCU grace periods); main starts
// it before stdin is read, so a DEL refused for its stdin or its
// configuration still deletes the link, whole, and reports the refusal
// with its code.
func del(args *pluginmain.CmdArgs, d *linkDeletion) error {
	err := runVerb(args, func(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf) error {
		if err := releaseLease(ctx, args, conf); err != nil {
			return err
		}
		if !conf.HostAccess && conf.VLAN == 0 {
			return nil
		}
		// A VLAN sub-interface goes after its last ipvlan link, so with
		// vlan the host side waits for the link to be gone. hostAccess's
		// routes and shim need nothing from it.
		if conf.VLAN != 0 {
			if err := d.wait(); err != nil {
				return err
			}
		}
		return releaseShared(args, conf)
	})
	if lerr := d.wait(); err == nil {
		err = lerr
	}
	return err // as IPAM or the parser gave it: a *types.Error keeps its code
}

// linkDeletion is deleteLink running on a goroutine of its own.
type linkDeletion struct {
	done chan struct{}
	err  error
}

func startLinkDeletion(nsPath, ifName string) *linkDeletion {
	d := &linkDeletion{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		d.err = deleteLink(nsPath, ifName)
	}()
	return d
}

// wait waits for the deletion and returns its error; it may be called
// any number of times.
func (d *linkDeletion) wait() error {
	<-d.done
	return d.err
}

// releaseLease asks IPAM, if there is one, to release the container's lease.
func releaseLease(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf) error {
	if conf.IPAM.Type == "" {
		return nil
	}
	return ipam{args, conf}.del(ctx)
}

// deleteLink deletes ifName in the namespace nsPath if it is an ipvlan
// link: ip -n <netns> link del <ifname>. A missing namespace or link is
// success, and a link of another type is not ours to delete.
func deleteLink(nsPath, ifName string) error {
	if nsPath == "" || ifName == "" {
		return nil
	}
	n, err := ns.GetNS(nsPath)
	if err != nil {
		var notExist ns.NSPathNotExistErr
		var notNS ns.NSPathNotNSErr
		if errors.As(err, &notExist) || errors.As(err, &notNS) {
			return nil
		}
		return fmt.Errorf("open CNI_NETNS %q: %w", nsPath, err)
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(netns.NsHandle(n.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up %s in %s: %w", ifName, nsPath, err)
	}
	if l.Type() != "ipvlan" {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("ip link del %s in %s: %w", ifName, nsPath, err)
	}
	return nil
}
