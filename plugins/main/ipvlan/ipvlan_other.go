//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

func unsupported(*pluginmain.CmdArgs) error {
	return fmt.Errorf("ipvlan is not supported on %s", runtime.GOOS)
}

var (
	cmdAdd    = unsupported
	cmdDel    = unsupported
	cmdCheck  = unsupported
	cmdStatus = unsupported
	cmdGC     = unsupported
)

type linkDeletion struct{}

func startLinkDeletion(string, string) *linkDeletion      { return &linkDeletion{} }
func (*linkDeletion) wait() error                         { return nil }
func del(args *pluginmain.CmdArgs, _ *linkDeletion) error { return unsupported(args) }
