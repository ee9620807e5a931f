package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/resultjson"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/client"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/daemon"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

// callSlack is how much longer than the server search the plugin waits
// for the daemon's answer.
const callSlack = 5 * time.Second

func plan(args *pluginmain.CmdArgs) (*Plan, error) {
	return parseConfig(args.StdinData, args.ContainerID, args.IfName, args.Netns, args.Args)
}

func call(p *Plan, verb string) (*client.Lease, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout+callSlack)
	defer cancel()
	req := p.Req
	req.Verb = verb
	return daemon.Call(ctx, p.SocketPath, &req)
}

func cmdAdd(args *pluginmain.CmdArgs) error {
	p, err := plan(args)
	if err != nil {
		return err
	}
	lease, err := call(p, daemon.VerbAdd)
	var un *daemon.Unreachable
	if errors.As(err, &un) {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("no lease for %s: %v", args.IfName, err), "")
	}
	if err != nil {
		return err
	}
	out, err := resultjson.Encode(Result(lease), p.Conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("convert result to cniVersion %q: %v", p.Conf.CNIVersion, err), "")
	}
	_, err = os.Stdout.Write(out)
	return err
}

func cmdDel(args *pluginmain.CmdArgs) error {
	p, err := plan(args)
	if err != nil {
		return err
	}
	_, err = call(p, daemon.VerbDel)
	var un *daemon.Unreachable
	if errors.As(err, &un) {
		// The container goes all the same; the daemon, once back, releases
		// the lease when it finds the namespace gone.
		fmt.Fprintf(os.Stderr, "dhcp: DEL of %s: %v: the daemon releases the lease when it runs again\n", args.IfName, err)
		return nil
	}
	return err
}

func cmdCheck(args *pluginmain.CmdArgs) error {
	p, err := plan(args)
	if err != nil {
		return err
	}
	_, err = call(p, daemon.VerbCheck)
	return err
}

// gcConf is the part of GC's configuration the plugin reads.
type gcConf struct {
	ValidAttachments []struct {
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
	} `json:"cni.dev/valid-attachments"`
}

func cmdGC(args *pluginmain.CmdArgs) error {
	p, err := plan(args)
	if err != nil {
		return err
	}
	var gc gcConf
	if err := json.Unmarshal(args.StdinData, &gc); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode cni.dev/valid-attachments: %v", err), "")
	}
	for _, a := range gc.ValidAttachments {
		p.Req.Valid = append(p.Req.Valid, leases.Key{Network: p.Conf.Name, ContainerID: a.ContainerID, IfName: a.IfName})
	}
	_, err = call(p, daemon.VerbGC)
	return err
}

func cmdStatus(args *pluginmain.CmdArgs) error {
	p, err := plan(args)
	if err != nil {
		return err
	}
	p.Timeout = 0
	_, err = call(p, daemon.VerbStatus)
	var un *daemon.Unreachable
	if errors.As(err, &un) {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	return err
}

// Result is the CNI result of a lease: its address and router, its
// classless static routes (option 121) or else a default route through
// the router, and its DNS servers and domain.
func Result(l *client.Lease) *current.Result {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	ip := &current.IPConfig{Address: net.IPNet{IP: l.Address.Addr().AsSlice(), Mask: net.CIDRMask(l.Address.Bits(), 32)}}
	if l.Router.IsValid() {
		ip.Gateway = l.Router.AsSlice()
	}
	r.IPs = []*current.IPConfig{ip}
	if len(l.Routes) > 0 {
		// RFC 3442: with option 121 the router option is not a route.
		for _, rt := range l.Routes {
			route := &types.Route{Dst: net.IPNet{IP: rt.Dst.Addr().AsSlice(), Mask: net.CIDRMask(rt.Dst.Bits(), 32)}}
			if rt.Via.IsValid() && !rt.Via.IsUnspecified() {
				route.GW = rt.Via.AsSlice()
			}
			r.Routes = append(r.Routes, route)
		}
	} else if l.Router.IsValid() {
		r.Routes = []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: l.Router.AsSlice()}}
	}
	for _, d := range l.DNS {
		r.DNS.Nameservers = append(r.DNS.Nameservers, d.String())
	}
	r.DNS.Domain = l.Domain
	return r
}
