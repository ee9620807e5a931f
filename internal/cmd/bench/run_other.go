//go:build !linux

package main

import (
	"context"
	"fmt"
	"runtime"
)

func run(context.Context, config, *Report, func(string, ...any)) error {
	return fmt.Errorf("network namespaces and ipvlan are not supported on %s", runtime.GOOS)
}
