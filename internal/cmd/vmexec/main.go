// Command vmexec runs a program, typically a Go test binary, inside a qemu
// guest booting Debian's kernel (see package vmtest). It is meant for
//
//	CGO_ENABLED=0 go test -exec vmexec ./pkg/...
//
// which boots one guest per package and runs all of the package's tests in
// it. The guest's output is streamed, the exit status is the program's, and
// a last line tells how many tests passed, failed and were skipped.
//
// Environment:
//
//	VMTEST_FILES    colon-separated host files to copy into the guest at the
//	                same path (with their shared libraries), or src=dst to
//	                put src at dst
//	VMTEST_KERNEL   the Debian kernel metapackage to boot (default
//	                linux-image-amd64; linux-image-cloud-amd64 is the other
//	                flavour the project runs on)
//	VMTEST_MEMORY   guest memory in MiB (default 2048)
//	VMTEST_TIMEOUT  host-side limit, a Go duration (default: the test's
//	                -test.timeout plus 5 minutes, else 30 minutes)
//	IPVLAN_*        passed to the guest program unchanged
//
// Exit status: the guest program's, or 125 when the run itself failed.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/internal/vmtest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vmexec program [args...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1], os.Args[2:]))
}

func run(prog string, args []string) int {
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	cwd, err := os.Getwd()
	if err != nil {
		logf("vmexec: %v", err)
		return 125
	}
	root, err := vmtest.ModuleRoot(cwd)
	if err != nil {
		logf("vmexec: %v", err)
		return 125
	}
	cfg := vmtest.Config{
		RepoRoot: root,
		Program:  prog,
		Args:     args,
		Dir:      cwd,
		Timeout:  timeout(args),
		Logf:     logf,
	}
	if files := os.Getenv("VMTEST_FILES"); files != "" {
		cfg.Files = strings.Split(files, ":")
	}
	cfg.KernelPackage = os.Getenv("VMTEST_KERNEL")
	if mem, err := strconv.Atoi(os.Getenv("VMTEST_MEMORY")); err == nil {
		cfg.MemoryMB = mem
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "IPVLAN_") {
			cfg.Env = append(cfg.Env, kv)
		}
	}
	name, _ := filepath.Rel(root, cwd)
	res, err := vmtest.Run(context.Background(), cfg)
	if err != nil {
		logf("vmtest: %s: %v", name, err)
		return 125
	}
	summary := fmt.Sprintf("vmtest: %s: kernel %s, %.1fs, guest exit status %d", name, res.Kernel, res.Elapsed.Seconds(), res.ExitCode)
	if t := res.Tests; t.Passed+t.Failed+t.Skipped > 0 {
		summary += fmt.Sprintf(": %d passed, %d failed, %d skipped", t.Passed, t.Failed, t.Skipped)
	}
	logf("%s", summary)
	return res.ExitCode
}

// timeout is the host-side limit: VMTEST_TIMEOUT, else the test binary's
// own -test.timeout plus time to boot, else 30 minutes.
func timeout(args []string) time.Duration {
	if d, err := time.ParseDuration(os.Getenv("VMTEST_TIMEOUT")); err == nil {
		return d
	}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-test.timeout="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				return d + 5*time.Minute
			}
		}
	}
	return 30 * time.Minute
}
