// Command clusterbench measures cluster-ipam beside host-local, natively:
// it starts a three-member etcd cluster on loopback ports (Debian's
// etcd-server), runs the built plugin binaries as a runtime would, and
// prints the p50 and p99 of one ADD and one DEL at concurrency 1, 16 and
// 64, the etcd write transactions per ADD and DEL (committed raft
// proposals, read from a member's metrics), and a churn run: 1,000
// attachments over 10 simulated nodes, 10 concurrent per node, then all
// released. The two plugins take turns within each row, the CPUs idle
// before each turn. It needs no privilege.
//
//	clusterbench -bin bin
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/internal/cpuidle"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/etcdtest"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the built cluster-ipam and host-local binaries")
	n := flag.Int("n", 256, "attachments per plugin and concurrency")
	churn := flag.Int("churn", 1000, "attachments of the churn run (0: none)")
	nodes := flag.Int("nodes", 10, "simulated nodes of the churn run")
	concs := flag.String("conc", "1,16,64", "concurrencies of the rows, comma-separated")
	flag.Parse()
	var conc []int
	for _, f := range strings.Split(*concs, ",") {
		c, err := strconv.Atoi(f)
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "clusterbench: -conc %q: %q is not a concurrency\n", *concs, f)
			os.Exit(2)
		}
		conc = append(conc, c)
	}
	if err := run(*bin, *n, *churn, *nodes, conc); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin     string
	cluster *etcdtest.Cluster
	dataDir string
}

func run(bin string, n, churn, nodes int, concs []int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "clusterbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := etcdtest.Start(ctx, filepath.Join(dir, "etcd"), 3, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	b := &bench{bin: bin, cluster: c, dataDir: filepath.Join(dir, "host-local")}
	fmt.Printf("etcd: 3 members on loopback, data in %s (the machine's disk); %d attachments per row\n\n", os.TempDir(), n)
	fmt.Printf("%-13s %5s %9s %9s %9s %9s %11s %11s\n", "plugin", "conc", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "writes/ADD", "writes/DEL")
	p50 := map[string]map[int]time.Duration{"host-local": {}, "cluster-ipam": {}}
	var writesAdd []float64
	for _, conc := range concs {
		rs, err := b.round(ctx, fmt.Sprintf("bench-%d", conc), conc, n)
		if err != nil {
			return err
		}
		for _, plugin := range plugins {
			r := rs[plugin]
			fmt.Printf("%-13s %5d %9s %9s %9s %9s %11s %11s\n", plugin, conc, ms(r.add, 50), ms(r.add, 99), ms(r.del, 50), ms(r.del, 99), r.writesAdd, r.writesDel)
			p50[plugin][conc] = pct(r.add, 50)
		}
		writesAdd = append(writesAdd, rs["cluster-ipam"].perAdd)
	}

	var r *result
	if churn > 0 {
		fmt.Printf("\nchurn: %d attachments over %d nodes, %d concurrent per node\n", churn, nodes, 10)
		var err error
		if r, err = b.churn(ctx, nodes, churn/nodes, 10); err != nil {
			return err
		}
		fmt.Printf("  allocate all: %v wall, ADD p50 %s p99 %s, %s writes/ADD\n", r.addWall.Round(time.Millisecond), ms(r.add, 50), ms(r.add, 99), r.writesAdd)
		fmt.Printf("  release all:  %v wall, DEL p50 %s p99 %s, %s writes/DEL\n", r.delWall.Round(time.Millisecond), ms(r.del, 50), ms(r.del, 99), r.writesDel)
		writesAdd = append(writesAdd, r.perAdd)
	}

	fmt.Println("\ntargets:")
	for _, conc := range concs {
		ratio := float64(p50["cluster-ipam"][conc]) / float64(p50["host-local"][conc])
		fmt.Printf("  ADD p50 at concurrency %2d: %.2fx host-local's (target at most 1.5x): %s\n", conc, ratio, verdict(ratio <= 1.5))
	}
	worst := slices.Max(writesAdd)
	fmt.Printf("  etcd write transactions per ADD: at most %.3f (target at most 1.1): %s\n", worst, verdict(worst <= 1.1))
	if r != nil {
		fmt.Printf("  churn, %d allocated in %v (target under 10s): %s\n", churn, r.addWall.Round(time.Millisecond), verdict(r.addWall < 10*time.Second))
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

type result struct {
	add, del             []time.Duration
	addWall, delWall     time.Duration
	perAdd               float64
	writesAdd, writesDel string
}

func (b *bench) conf(plugin, network, node string) string {
	ipam := map[string]any{"type": plugin, "subnet": "10.128.0.0/16"}
	if plugin == "host-local" {
		ipam["dataDir"] = b.dataDir
	} else {
		// A generous bound of the whole verb: the numbers measure how
		// long a verb takes, not whether it fits the default 5 s.
		ipam["etcd"] = map[string]any{"endpoints": b.cluster.Endpoints(), "dialTimeout": 30}
		ipam["node"] = node
	}
	out, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": network, "type": "ipvlan", "ipam": ipam})
	return string(out)
}

func (b *bench) exec(ctx context.Context, plugin, command, id, stdin string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(b.bin, plugin))
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=/dev/null", "CNI_IFNAME=eth0", "CNI_PATH=" + b.bin}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("%s %s %s: %w: %s", plugin, command, id, err, out.Bytes())
	}
	return took, nil
}

// phase runs command for ids with conc workers, returning the durations
// and the wall time.
func (b *bench) phase(ctx context.Context, plugin, command string, ids []string, confOf func(i int) string, conc int) ([]time.Duration, time.Duration, error) {
	durs := make([]time.Duration, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for i := range next {
				durs[i], errs[i] = b.exec(ctx, plugin, command, ids[i], confOf(i))
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return durs, wall, nil
}

// measured runs fn and returns the etcd proposals committed meanwhile.
func (b *bench) measured(ctx context.Context, fn func() error) (float64, error) {
	before, err := b.cluster.Committed(ctx)
	if err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	after, err := b.cluster.Committed(ctx)
	return after - before, err
}

// plugins are the two a row compares.
var plugins = []string{"host-local", "cluster-ipam"}

// round runs n ADDs, then n DELs, of each plugin on one node, conc at a
// time. The plugins take turns in segments of max(conc, 32) calls, the
// first to go alternating, so that a drift of the machine's speed, which
// over seconds exceeds the targets' margins, hits both alike; before each
// segment the CPUs go idle, so that neither is timed beside the etcd
// members finishing the other's writes (they commit to disk in batches).
func (b *bench) round(ctx context.Context, network string, conc, n int) (map[string]*result, error) {
	seg := max(conc, 32)
	out := map[string]*result{}
	ids := map[string][]string{}
	for _, plugin := range plugins {
		out[plugin] = &result{writesAdd: "-", writesDel: "-"}
		for i := range n {
			ids[plugin] = append(ids[plugin], fmt.Sprintf("%s-%d-%d", plugin, conc, i))
		}
	}
	var writes [2]float64
	for v, command := range []string{"ADD", "DEL"} {
		for k, start := 0, 0; start < n; k, start = k+1, start+seg {
			end := min(start+seg, n)
			for j := range plugins {
				plugin := plugins[(j+k)%len(plugins)]
				confOf := func(int) string { return b.conf(plugin, network, "node-1") }
				cpuidle.Settle(100*time.Millisecond, 5*time.Second)
				var durs []time.Duration
				w, err := b.measured(ctx, func() (err error) {
					durs, _, err = b.phase(ctx, plugin, command, ids[plugin][start:end], confOf, conc)
					return err
				})
				if err != nil {
					return nil, err
				}
				r := out[plugin]
				if command == "ADD" {
					r.add = append(r.add, durs...)
				} else {
					r.del = append(r.del, durs...)
				}
				if plugin == "cluster-ipam" {
					writes[v] += w
				}
			}
		}
	}
	r := out["cluster-ipam"]
	r.perAdd = writes[0] / float64(n)
	r.writesAdd = fmt.Sprintf("%.3f", r.perAdd)
	r.writesDel = fmt.Sprintf("%.3f", writes[1]/float64(n))
	return out, nil
}

// churn allocates per attachments on each of nodes simulated nodes, conc
// at a time per node, all nodes at once; then releases them all alike.
func (b *bench) churn(ctx context.Context, nodes, per, conc int) (*result, error) {
	r := &result{}
	run := func(command string) ([]time.Duration, time.Duration, error) {
		var mu sync.Mutex
		var all []time.Duration
		var firstErr error
		var wg sync.WaitGroup
		start := time.Now()
		for node := range nodes {
			wg.Go(func() {
				name := fmt.Sprintf("churn-node-%d", node)
				ids := make([]string, per)
				for i := range ids {
					ids[i] = fmt.Sprintf("%s-ctr-%d", name, i)
				}
				conf := b.conf("cluster-ipam", "churn", name)
				durs, _, err := b.phase(ctx, "cluster-ipam", command, ids, func(int) string { return conf }, conc)
				mu.Lock()
				defer mu.Unlock()
				all = append(all, durs...)
				if err != nil && firstErr == nil {
					firstErr = err
				}
			})
		}
		wg.Wait()
		return all, time.Since(start), firstErr
	}
	wa, err := b.measured(ctx, func() (err error) {
		r.add, r.addWall, err = run("ADD")
		return err
	})
	if err != nil {
		return nil, err
	}
	wd, err := b.measured(ctx, func() (err error) {
		r.del, r.delWall, err = run("DEL")
		return err
	})
	if err != nil {
		return nil, err
	}
	total := float64(nodes * per)
	r.perAdd = wa / total
	r.writesAdd = fmt.Sprintf("%.3f", r.perAdd)
	r.writesDel = fmt.Sprintf("%.3f", wd/total)
	return r, nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func ms(d []time.Duration, p int) string {
	return fmt.Sprintf("%.1fms", float64(pct(d, p).Microseconds())/1000)
}
