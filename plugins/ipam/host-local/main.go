// Command host-local is a CNI IPAM plugin that leases addresses from ranges
// configured per network and keeps the leases in files on the host, in the
// format of the reference host-local plugin of containernetworking/plugins,
// so either plugin can serve a network the other has used.
//
// It implements ADD, DEL, CHECK, GC, STATUS and VERSION (package hostlocal
// does the work). It needs write access to its data directory (default
// /var/lib/cni/networks) and no network privilege: it never touches a
// network namespace.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
)

func main() {
	p := hostlocal.OnDisk()
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.Add,
		Del:    p.Del,
		Check:  p.Check,
		GC:     p.GC,
		Status: p.Status,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "CNI host-local IPAM plugin")
}
