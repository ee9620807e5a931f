// Command hlbench times the host-local binaries, ours beside the reference,
// on a network that already holds many leases, natively, on the file
// system of its temporary directory: ADD and DEL alone; ours right after
// one change by the reference (the case that makes ours reconcile its
// index); and 20 ADDs taking turns, ours and the reference, beside 20 by
// the reference alone. It prints medians (p50) and totals. make bench runs
// it; it needs no privilege and touches no network namespace.
//
//	hlbench -ours bin/host-local -reference /usr/lib/cni/host-local
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ours := flag.String("ours", "bin/host-local", "our host-local binary")
	ref := flag.String("reference", "/usr/lib/cni/host-local", "the reference host-local binary")
	leases := flag.Int("leases", 3000, "leases in the network before timing")
	runs := flag.Int("runs", 40, "timed ADDs (and DELs) per case")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *ours, *ref, *leases, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "hlbench:", err)
		os.Exit(1)
	}
}

// bench is one network directory prefilled with leases.
type bench struct {
	dataDir string
	stdin   string
	seq     int // makes container IDs unique
}

const network = "hlbench"

func newBench(root string, leases int) (*bench, error) {
	dataDir, err := os.MkdirTemp(root, "hlbench-")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// The leases as the reference plugin leaves them.
	a, last := netip.MustParseAddr("10.200.0.2"), netip.Addr{}
	for i := range leases {
		if err := os.WriteFile(filepath.Join(dir, a.String()), fmt.Appendf(nil, "existing-%05d\r\neth0", i), 0o600); err != nil {
			return nil, err
		}
		last, a = a, a.Next()
	}
	if last.IsValid() {
		if err := os.WriteFile(filepath.Join(dir, "last_reserved_ip.0"), []byte(last.String()), 0o600); err != nil {
			return nil, err
		}
	}
	return &bench{
		dataDir: dataDir,
		// 1.0.0: the newest version the reference of Debian 12 speaks.
		stdin: `{"cniVersion":"1.0.0","name":"` + network + `","type":"host-local",` +
			`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","subnet":"10.200.0.0/16"}}`,
	}, nil
}

// do runs bin with one verb for container id and returns how long it took.
func (b *bench) do(ctx context.Context, bin, verb, id string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + id, "CNI_NETNS=/dev/null",
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(bin)}
	cmd.Stdin = strings.NewReader(b.stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s %s %s: %w: %s", bin, verb, id, err, out.Bytes())
	}
	return d, nil
}

func (b *bench) id(prefix string) string {
	b.seq++
	return fmt.Sprintf("%s-%05d", prefix, b.seq)
}

// pair ADDs and DELs one container with bin, after before (when set) made
// one change; it returns the ADD's and the DEL's times.
func (b *bench) pair(ctx context.Context, bin string, before func() error) (add, del time.Duration, err error) {
	id := b.id("timed")
	if before != nil {
		if err := before(); err != nil {
			return 0, 0, err
		}
	}
	if add, err = b.do(ctx, bin, "ADD", id); err != nil {
		return 0, 0, err
	}
	if before != nil {
		if err := before(); err != nil {
			return 0, 0, err
		}
	}
	del, err = b.do(ctx, bin, "DEL", id)
	return add, del, err
}

func p50(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// alone times runs ADD/DEL pairs of bin in a network of its own.
func alone(ctx context.Context, root, bin string, leases, runs int) (add, del time.Duration, err error) {
	b, err := newBench(root, leases)
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(b.dataDir)
	// The first verb of ours builds its index: not timed.
	if _, _, err := b.pair(ctx, bin, nil); err != nil {
		return 0, 0, err
	}
	var adds, dels []time.Duration
	for range runs {
		a, d, err := b.pair(ctx, bin, nil)
		if err != nil {
			return 0, 0, err
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	return p50(adds), p50(dels), nil
}

// afterChange times ours right after one ADD or DEL by the reference.
func afterChange(ctx context.Context, root, ours, ref string, leases, runs int) (add, del time.Duration, err error) {
	b, err := newBench(root, leases)
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(b.dataDir)
	if _, _, err := b.pair(ctx, ours, nil); err != nil {
		return 0, 0, err
	}
	var held string // the reference's container, added then deleted
	change := func() error {
		if held == "" {
			held = b.id("ref")
			_, err := b.do(ctx, ref, "ADD", held)
			return err
		}
		_, err := b.do(ctx, ref, "DEL", held)
		held = ""
		return err
	}
	var adds, dels []time.Duration
	for range runs {
		a, d, err := b.pair(ctx, ours, change)
		if err != nil {
			return 0, 0, err
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	return p50(adds), p50(dels), nil
}

// turns runs n ADDs, then n DELs of the same containers, by bins in turn.
// It returns every ADD's and DEL's time by binary, and the totals.
func turns(ctx context.Context, root string, bins []string, leases, n int) (adds, dels map[string][]time.Duration, addTotal, delTotal time.Duration, err error) {
	b, err := newBench(root, leases)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	defer os.RemoveAll(b.dataDir)
	// Every binary has seen the directory once (ours builds its index).
	for _, bin := range bins {
		if _, _, err := b.pair(ctx, bin, nil); err != nil {
			return nil, nil, 0, 0, err
		}
	}
	adds, dels = map[string][]time.Duration{}, map[string][]time.Duration{}
	ids := make([]string, n)
	for i := range n {
		bin := bins[i%len(bins)]
		ids[i] = b.id("turn")
		d, err := b.do(ctx, bin, "ADD", ids[i])
		if err != nil {
			return nil, nil, 0, 0, err
		}
		adds[bin] = append(adds[bin], d)
		addTotal += d
	}
	for i := range n {
		bin := bins[i%len(bins)]
		d, err := b.do(ctx, bin, "DEL", ids[i])
		if err != nil {
			return nil, nil, 0, 0, err
		}
		dels[bin] = append(dels[bin], d)
		delTotal += d
	}
	return adds, dels, addTotal, delTotal, nil
}

// fsName names the file system that holds dir.
func fsName(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	names := map[int64]string{0xEF53: "ext4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x794C7630: "overlayfs"}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("file system type %#x", st.Type)
}

func run(ctx context.Context, ours, ref string, leases, runs int) error {
	for _, bin := range []string{ours, ref} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("host-local binary: %w (make build; make deps for the reference)", err)
		}
	}
	root := os.TempDir()
	fmt.Printf("hlbench: host-local with %d leases in one network, %s (%s), p50 of %d runs\n", leases, root, fsName(root), runs)
	oa, od, err := alone(ctx, root, ours, leases, runs)
	if err != nil {
		return err
	}
	ra, rd, err := alone(ctx, root, ref, leases, runs)
	if err != nil {
		return err
	}
	ca, cd, err := afterChange(ctx, root, ours, ref, leases, runs)
	if err != nil {
		return err
	}
	fmt.Printf("hlbench: %-42s ADD %9s   DEL %9s\n", "ours alone", ms(oa), ms(od))
	fmt.Printf("hlbench: %-42s ADD %9s   DEL %9s\n", "reference alone", ms(ra), ms(rd))
	fmt.Printf("hlbench: %-42s ADD %9s   DEL %9s   (%.2fx and %.2fx the reference alone; target 2x)\n",
		"ours right after one change by the reference", ms(ca), ms(cd), float64(ca)/float64(ra), float64(cd)/float64(rd))

	const n = 20
	adds, dels, at, dt, err := turns(ctx, root, []string{ours, ref}, leases, n)
	if err != nil {
		return err
	}
	radds, rdels, rat, rdt, err := turns(ctx, root, []string{ref}, leases, n)
	if err != nil {
		return err
	}
	fmt.Printf("hlbench: %-42s ADD %9s   DEL %9s   (p50 ours %s/%s, reference %s/%s)\n",
		fmt.Sprintf("%d in turns, ours and the reference, total", n), ms(at), ms(dt),
		ms(p50(adds[ours])), ms(p50(dels[ours])), ms(p50(adds[ref])), ms(p50(dels[ref])))
	fmt.Printf("hlbench: %-42s ADD %9s   DEL %9s   (p50 %s/%s)\n",
		fmt.Sprintf("%d by the reference alone, total", n), ms(rat), ms(rdt), ms(p50(radds[ref])), ms(p50(rdels[ref])))
	if ctx.Err() != nil {
		return errors.New("timed out")
	}
	return nil
}
