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

	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

func main() {
	cmd := os.Getenv("CNI_COMMAND")
	// ipvlan's rule for CNI_IFNAME is stricter than pluginmain's (no
	// control characters), and DEL's early deletion below uses the name.
	if cmd == "ADD" || cmd == "DEL" || cmd == "CHECK" {
		if err := validateIfName(os.Getenv("CNI_IFNAME")); err != nil {
			pluginmain.Exit(err)
		}
	}
	funcs := pluginmain.Funcs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus, GC: cmdGC}
	var deletion *linkDeletion
	if cmd == "DEL" {
		// The link's deletion starts at once, before stdin is read; never
		// in the plugin's own namespace.
		if err := pluginmain.CheckNetns(os.Getenv("CNI_NETNS"), os.Getenv("CNI_NETNS_OVERRIDE")); err != nil {
			pluginmain.Exit(err)
		}
		d := startLinkDeletion(os.Getenv("CNI_NETNS"), os.Getenv("CNI_IFNAME"))
		funcs.Del = func(args *pluginmain.CmdArgs) error { return del(args, d) }
		deletion = d
	}
	err := pluginmain.Run(funcs, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "ipvlan CNI plugin",
		os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	if deletion != nil {
		_ = deletion.wait() // when the DEL was refused, the link still goes, whole
	}
	pluginmain.Exit(err)
}
