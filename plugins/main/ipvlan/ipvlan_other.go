//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
)

func unsupported(*skel.CmdArgs) error {
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

func startLinkDeletion(string, string) *linkDeletion { return &linkDeletion{} }
func (*linkDeletion) wait() error                    { return nil }
func del(args *skel.CmdArgs, _ *linkDeletion) error  { return unsupported(args) }
