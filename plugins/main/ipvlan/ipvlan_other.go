//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

func unsupported(*skel.CmdArgs) error {
	return fmt.Errorf("ipvlan is not supported on %s", runtime.GOOS)
}

func runDel(skelMain func() *types.Error, exit func(*types.Error)) { exit(skelMain()) }

var (
	cmdAdd    = unsupported
	cmdDel    = unsupported
	cmdCheck  = unsupported
	cmdStatus = unsupported
	cmdGC     = unsupported
)
