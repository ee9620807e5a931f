// Command cluster-ipam is a CNI IPAM plugin that keeps addresses unique
// across every node of a cluster: nodes claim blocks of the configured
// ranges in etcd and allocate inside them, each allocation one etcd
// transaction that fails when the address is taken. Its ranges are
// host-local's, so moving a network is a change of ipam type.
//
// Run without arguments it is the plugin: ADD, DEL, CHECK, GC, STATUS and
// VERSION (package clusteripam does the work). Run with arguments it is
// the operator's tool: `cluster-ipam show` and `cluster-ipam release-node`
// (see `cluster-ipam help`). It needs the etcd cluster and no privilege:
// it never touches a network namespace.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/clusteripam"
)

func main() {
	p := clusteripam.OnEtcd()
	if len(os.Args) > 1 {
		os.Exit(p.Run(os.Args[1:], os.Stdout, os.Stderr))
	}
	pluginmain.Main(pluginmain.Funcs{
		Add:    p.Add,
		Del:    p.Del,
		Check:  p.Check,
		GC:     p.GC,
		Status: p.Status,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "CNI cluster-ipam IPAM plugin")
}
