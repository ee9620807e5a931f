// Command dhcp is a CNI IPAM plugin that takes each attachment's address
// from a DHCP server on the LAN, and, run as `dhcp daemon`, the daemon
// that holds and renews those leases.
//
// The plugin (ADD, DEL, CHECK, GC, STATUS, VERSION) only talks to the
// daemon over its unix socket and needs no privilege. The daemon speaks
// DHCP on the master in the host namespace for every attachment, each
// with a client identifier of its own (all ipvlan interfaces share the
// master's MAC) and the broadcast flag set; it keeps its leases in a
// directory (package leases) and renews them. See package daemon for its
// privileges.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/daemon"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "daemon" {
		if err := runDaemon(os.Args[2:]); err != nil {
			log.Print(err)
			os.Exit(1)
		}
		return
	}
	pluginmain.Main(pluginmain.Funcs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "CNI dhcp IPAM plugin")
}

func runDaemon(argv []string) error {
	fs := flag.NewFlagSet("dhcp daemon", flag.ContinueOnError)
	socketPath := fs.String("socketpath", daemon.DefaultSocketPath, "the unix socket the plugin talks to")
	leaseDir := fs.String("leasedir", "/var/lib/cni/dhcp", "the directory the leases are kept in")
	hostPrefix := fs.String("hostprefix", "", "prefix of the host's root in the daemon's file system (a daemon in a container): for the socket and namespace paths")
	pidfile := fs.String("pidfile", "", "write the daemon's PID to this file")
	renewAt := fs.Float64("renew-at", 0, "renew at this fraction of the lease time (0: at the server's T1, option 58)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long one renewal waits for the server")
	fs.Bool("broadcast", true, "accepted for the reference's command line; the broadcast flag is set per network (ipam \"broadcast\", default true)")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if *renewAt < 0 || *renewAt >= 1 {
		return fmt.Errorf("invalid -renew-at %v: want a fraction from 0 to below 1", *renewAt)
	}
	store, err := leases.Open(*leaseDir)
	if err != nil {
		return err
	}
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write pidfile: %w", err)
		}
	}
	logger := log.New(os.Stderr, "dhcp daemon: ", log.LstdFlags)
	d := daemon.New(daemon.Options{
		Store: store, Logf: logger.Printf, RenewAt: *renewAt, RequestTimeout: *timeout, HostPrefix: *hostPrefix,
	})
	l, err := daemon.Listen(*hostPrefix + *socketPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := d.Resume(ctx); err != nil {
		logger.Print(err)
	}
	logger.Printf("listening on %s, leases in %s", *hostPrefix+*socketPath, *leaseDir)
	err = d.Serve(ctx, l)
	d.Close()
	return err
}
