// Command host-local is a CNI IPAM plugin that leases addresses from ranges
// configured per network and keeps the leases in files on the host, in the
// format of the reference host-local plugin of containernetworking/plugins,
// so either plugin can serve a network the other has used.
//
// It implements ADD, DEL, CHECK, GC, STATUS and VERSION (package hostlocal
// does the work). It needs write access to its data directory (default
// /var/lib/cni/networks) and no network privilege: it never touches a
// network namespace. A verb that cannot take the network's lock within
// verbTimeout fails with code 11 (try again later).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
)

// verbTimeout bounds one invocation, as the ipvlan plugin bounds its own.
const verbTimeout = 2 * time.Minute

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), verbTimeout)
	defer cancel()
	p := hostlocal.OnDisk(func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "host-local: "+format+"\n", args...)
	})
	with := func(verb func(context.Context, *pluginmain.CmdArgs) error) func(*pluginmain.CmdArgs) error {
		return func(args *pluginmain.CmdArgs) error { return verb(ctx, args) }
	}
	pluginmain.Main(pluginmain.Funcs{
		Add:    with(p.Add),
		Del:    with(p.Del),
		Check:  with(p.Check),
		GC:     with(p.GC),
		Status: with(p.Status),
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "CNI host-local IPAM plugin")
}
