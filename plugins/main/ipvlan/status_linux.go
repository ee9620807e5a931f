//go:build linux

package main

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

func cmdStatus(args *pluginmain.CmdArgs) error { return runVerb(args, status) }

// status reports whether ADD can succeed: the master exists (when it lives
// in the host namespace and is not taken from a previous plugin) and IPAM
// is ready.
func status(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf) error {
	if !conf.LinkInContainer && (conf.Master != "" || conf.IPAM.Type != "") {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink handle: %w", err)
		}
		defer h.Close()
		if conf.Master != "" {
			if _, err := h.LinkByName(conf.Master); err != nil {
				return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("master %q not found: %v", conf.Master, err), "")
			}
		} else if _, err := defaultRouteLink(h); err != nil {
			return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("master is omitted and %v", err), "")
		}
	}
	if err := statusShared(args, conf); err != nil {
		return err
	}
	if conf.IPAM.Type == "" {
		return nil
	}
	return ipam{args, conf}.status(ctx)
}

func cmdGC(args *pluginmain.CmdArgs) error { return runVerb(args, gc) }

// gc has IPAM release the leases of attachments no longer valid. Links die
// with their namespaces: only IPAM's leases can outlive them.
func gc(ctx context.Context, args *pluginmain.CmdArgs, conf *NetConf) error {
	if err := gcShared(args, conf); err != nil {
		return err
	}
	if conf.IPAM.Type == "" {
		return nil
	}
	return ipam{args, conf}.gc(ctx)
}
