// Command ipvlan is a CNI plugin that gives a container an ipvlan interface
// on a host interface (the master): every container shares the master's
// MAC address and the kernel tells them apart by IP address.
//
// It implements ADD, DEL, CHECK, STATUS, GC and VERSION of the CNI
// specification 1.1 and answers in versions 0.3.0 to 1.1.0. See the README
// for the configuration and what each verb does.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

func main() {
	// skel checks CNI_IFNAME too, but its message does not name the value.
	if cmd := os.Getenv("CNI_COMMAND"); cmd == "ADD" || cmd == "DEL" || cmd == "CHECK" {
		if err := validateIfName(os.Getenv("CNI_IFNAME")); err != nil {
			_ = err.Print()
			os.Exit(1)
		}
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "ipvlan CNI plugin")
}
