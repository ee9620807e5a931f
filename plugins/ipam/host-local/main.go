// Command host-local is a CNI IPAM plugin that leases addresses from ranges
// configured per network and keeps the leases in files on the host, in the
// format of the reference host-local plugin of containernetworking/plugins,
// so either plugin can serve a network the other has used.
//
// It implements ADD, DEL, CHECK, GC, STATUS and VERSION. It needs write
// access to its data directory (default /var/lib/cni/networks) and no
// network privilege: it never touches a network namespace.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store/disk"
)

func main() {
	p := plugin{open: func(dataDir, network string) (store.Store, error) {
		return disk.New(dataDir, network)
	}}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.add,
		Del:    p.del,
		Check:  p.check,
		GC:     p.gc,
		Status: p.status,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "CNI host-local IPAM plugin")
}
