// Command bench measures the ipvlan plugin and its host-local IPAM beside
// the reference plugins of containernetworking/plugins, in one run, with
// one configuration: only the directory the plugins are found in differs.
//
// It drives the plugin binaries through libcni as a runtime does. The
// plugins start in a "host" network namespace made for the benchmark,
// which holds one dummy master; every container is a namespace of its own;
// host-local leases from a /16, in a fresh data directory per
// implementation. A profile comes first: it takes ours apart (its plugins
// exec'd alone, and the netlink requests, namespace switches and sysctl
// writes of ADD, CHECK and DEL timed one by one in process), beside the
// floor, the time to start and finish a static Go binary that does
// nothing (-floor). Then, for each implementation, in this order:
//
//   - ADD, CHECK and DEL latency (p50, p99) in 100 containers, one call at
//     a time: ADD, CHECK and DEL in one container, then the next;
//   - the wall time of 200 ADDs, then 200 DELs, by 4 parallel workers;
//   - the latencies again beside -fill empty namespaces;
//   - and with -fill containers attached, in 100 namespaces made after
//     the fill's.
//
// In the phases without a fill, ours, the reference and the floor take
// turns container by container, so that a drift in the host's speed hits
// all alike; the others run for ours, then for the reference, each in turn
// with the floor. Each phase runs
// beside only the container namespaces it needs: the pool of namespaces
// grows before the parallel and the later phases, never before the phase
// with none attached, and the guest is let settle after it grows. After
// every DEL it checks that nothing leaked: no link but lo in a container,
// no lease in the data directory.
//
// It prints one table, the targets with met or not met (reported,
// never asserted), the profile, and all the numbers in milliseconds on a
// line starting with "bench-json: ". It exits non-zero when a call fails or
// something leaked. It needs root and a kernel with ipvlan: `make bench`
// runs it in the VM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// config is what the flags set.
type config struct {
	ours, reference, floor string
	containers             int // measured per phase
	fill                   int // attached before the second phase
	parallel               int // ADDs and DELs of the parallel phase
	workers                int
	runs                   int // of each profile step
}

func main() {
	var cfg config
	flag.StringVar(&cfg.ours, "ours", firstOf(filepath.SplitList(os.Getenv("CNI_PATH"))), "directory holding our ipvlan and host-local (default: the first of CNI_PATH)")
	flag.StringVar(&cfg.reference, "reference", "/usr/lib/cni", "directory holding the reference ipvlan and host-local")
	flag.StringVar(&cfg.floor, "floor", "", "a static Go binary that does nothing (internal/cmd/noop)")
	flag.IntVar(&cfg.containers, "n", 100, "containers measured per phase")
	flag.IntVar(&cfg.fill, "fill", 2000, "containers attached before the second phase")
	flag.IntVar(&cfg.parallel, "parallel", 200, "ADDs and DELs of the parallel phase")
	flag.IntVar(&cfg.workers, "workers", 4, "parallel workers (of the parallel phase and of the fill)")
	flag.IntVar(&cfg.runs, "runs", 100, "runs of each profile step, the floor's among them (in the phases the floor runs once per container)")
	timeout := flag.Duration("timeout", time.Hour, "limit of the whole run")
	flag.Parse()
	if cfg.ours == "" || cfg.floor == "" {
		fmt.Fprintln(os.Stderr, "bench: -floor is required, and -ours unless CNI_PATH is set")
		os.Exit(2)
	}
	if cfg.containers < 1 || cfg.fill < 0 || cfg.parallel < 1 || cfg.workers < 1 || cfg.runs < 1 {
		fmt.Fprintln(os.Stderr, "bench: -n, -parallel, -workers and -runs must be positive, -fill at least 0")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bench: %6.1fs: %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	rep := &Report{}
	err := run(ctx, cfg, rep, logf)
	rep.ElapsedMS = ms(time.Since(start))
	if perr := rep.print(os.Stdout); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("bench: OK")
}

func firstOf(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}
