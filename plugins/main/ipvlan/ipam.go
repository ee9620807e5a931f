package main

import (
	"context"
	"fmt"
	"os"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginexec"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
)

// bundledIPAM is the IPAM type this plugin can run in its own process.
const bundledIPAM = "host-local"

// ipam runs the IPAM verbs for one invocation: the bundled host-local in
// this process (one process start less per verb, the same code and on-disk
// store as the host-local binary), or, for any other type or with
// ipamExec, the plugin of that name in CNI_PATH (package pluginexec).
type ipam struct {
	args *pluginmain.CmdArgs
	conf *NetConf
}

func (i ipam) inProcess() bool {
	return i.conf.IPAM.Type == bundledIPAM && !i.conf.IPAMExec
}

// hostLocal is the bundled host-local; what its store skips (a lease file
// it cannot read) goes to stderr, the runtime's log, as the binary's does.
func (i ipam) hostLocal() hostlocal.Plugin {
	return hostlocal.OnDisk(func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "ipvlan: host-local: "+format+"\n", args...)
	})
}

func (i ipam) add(ctx context.Context) (*current.Result, error) {
	if i.inProcess() {
		return i.hostLocal().AddResult(ctx, i.args)
	}
	r, err := pluginexec.Add(ctx, i.conf.IPAM.Type, i.args.StdinData)
	if err != nil {
		return nil, err
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("convert IPAM %q result: %w", i.conf.IPAM.Type, err)
	}
	return res, nil
}

func (i ipam) del(ctx context.Context) error {
	if i.inProcess() {
		return i.hostLocal().Del(ctx, i.args)
	}
	return i.exec(ctx, "DEL")
}

func (i ipam) check(ctx context.Context) error {
	if i.inProcess() {
		return i.hostLocal().Check(ctx, i.args)
	}
	return i.exec(ctx, "CHECK")
}

func (i ipam) status(ctx context.Context) error {
	if i.inProcess() {
		return i.hostLocal().Status(ctx, i.args)
	}
	if ok, err := i.has11(ctx); err != nil || !ok {
		return err
	}
	return i.exec(ctx, "STATUS")
}

func (i ipam) gc(ctx context.Context) error {
	if i.inProcess() {
		return i.hostLocal().GC(ctx, i.args)
	}
	if ok, err := i.has11(ctx); err != nil || !ok {
		return err
	}
	return i.exec(ctx, "GC")
}

// exec runs the IPAM plugin of CNI_PATH for a verb that returns no result.
func (i ipam) exec(ctx context.Context, verb string) error {
	_, err := pluginexec.Run(ctx, i.conf.IPAM.Type, verb, i.args.StdinData)
	return err
}

// has11 reports whether the IPAM plugin implements STATUS and GC, which
// came with CNI 1.1.0. An older plugin (the reference host-local before
// 1.5, say) has nothing to report or collect, and asking it would fail the
// whole verb.
func (i ipam) has11(ctx context.Context) (bool, error) {
	ok, err := pluginexec.Supports(ctx, i.conf.IPAM.Type, "1.1.0")
	if err != nil {
		return false, fmt.Errorf("ask IPAM %q for its versions: %w", i.conf.IPAM.Type, err)
	}
	return ok, nil
}
