package clusteripam

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/cluster-ipam/store"
)

// DefaultGrace is how recent a node's last allocation or block claim may
// be before release-node refuses to release it without --force.
const DefaultGrace = 10 * time.Minute

const usage = `usage: cluster-ipam COMMAND --config FILE [flags]

Run without arguments, cluster-ipam is a CNI IPAM plugin. With arguments it
is the operator's tool for a network's store on etcd:

  show --config FILE
      blocks per node, allocations, free addresses per range set
  release-node --config FILE [--grace MINUTES] [--force] NAME
      free a removed node's blocks and allocations; refused when NAME
      allocated or claimed a block within the last --grace minutes
      (default 10) unless --force

FILE is a network configuration (.conf or .conflist) whose ipam is
cluster-ipam; its etcd settings and ranges are used.
`

// Run runs the operator command of args (os.Args[1:]) and returns the
// process's exit code: 0, 1 for a failure, 2 for a usage error.
func (p Plugin) Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "network configuration file")
	grace := fs.Float64("grace", DefaultGrace.Minutes(), "release-node: minutes since the node's last allocation")
	force := fs.Bool("force", false, "release-node: release even within --grace")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *config == "" {
		fmt.Fprintf(stderr, "cluster-ipam %s: --config is required\n", cmd)
		return 2
	}
	var run func(ctx context.Context, c *Config, st store.Store) error
	switch cmd {
	case "show":
		if fs.NArg() != 0 {
			fmt.Fprintf(stderr, "cluster-ipam show: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		run = func(ctx context.Context, c *Config, st store.Store) error { return show(ctx, c, st, stdout) }
	case "release-node":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "cluster-ipam release-node: give one node name")
			return 2
		}
		node := fs.Arg(0)
		run = func(ctx context.Context, c *Config, st store.Store) error {
			return releaseNode(ctx, st, node, time.Duration(*grace*float64(time.Minute)), *force, p.Now(), stdout)
		}
	default:
		fmt.Fprintf(stderr, "cluster-ipam: unknown command %q\n%s", cmd, usage)
		return 2
	}
	c, err := p.loadConfig(*config)
	if err != nil {
		fmt.Fprintf(stderr, "cluster-ipam %s: %v\n", cmd, err)
		return 1
	}
	// The operator's commands read whole prefixes: more time than a verb.
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout()+time.Minute)
	defer cancel()
	st, err := p.Open(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "cluster-ipam %s: %v\n", cmd, unavailable(c, err))
		return 1
	}
	defer st.Close()
	if err := run(ctx, c, st); err != nil {
		fmt.Fprintf(stderr, "cluster-ipam %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// loadConfig reads a network configuration file: a plugin's (.conf) or a
// list's (.conflist), taking the first plugin whose ipam type is
// cluster-ipam.
func (p Plugin) loadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if list.Plugins != nil {
		found := false
		for _, pl := range list.Plugins {
			var conf map[string]any
			if err := json.Unmarshal(pl, &conf); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if ipam, ok := conf["ipam"].(map[string]any); ok && ipam["type"] == "cluster-ipam" {
				conf["name"], conf["cniVersion"] = list.Name, list.CNIVersion
				if raw, err = json.Marshal(conf); err != nil {
					return nil, err
				}
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no plugin of the list has ipam type cluster-ipam", path)
		}
	}
	// The node is not used: the host name need not be a valid one.
	c, err := ParseConfig(raw, "", func() (string, error) { return "operator", nil })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// show prints the blocks per node, the allocations and the free addresses
// of every range set.
func show(ctx context.Context, c *Config, st store.Store, w io.Writer) error {
	blocks, err := st.Blocks(ctx)
	if err != nil {
		return err
	}
	allocs, err := st.Allocations(ctx, "")
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "network %q, etcd %s, prefix %s\n\n", c.Name, strings.Join(c.Etcd.Endpoints, ","), c.Etcd.Prefix)
	fmt.Fprintln(tw, "RANGE SET\tRANGES\tADDRESSES\tALLOCATED\tFREE")
	for i, set := range c.RangeSets {
		capacity := set.Capacity()
		n := 0
		for _, al := range allocs {
			if set.Contains(al.IP) {
				n++
			}
		}
		free := new(big.Int).Sub(capacity, big.NewInt(int64(n)))
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", i, set, capacity, n, free)
	}
	fmt.Fprintln(tw, "\nNODE\tBLOCK\tALLOCATED\tCLAIMED")
	byNode := map[string][]store.Block{}
	var nodes []string
	for _, b := range blocks {
		if byNode[b.Node] == nil {
			nodes = append(nodes, b.Node)
		}
		byNode[b.Node] = append(byNode[b.Node], b)
	}
	slices.Sort(nodes)
	for _, node := range nodes {
		for _, b := range byNode[node] {
			n := 0
			for _, al := range allocs {
				if b.Prefix.Contains(al.IP) {
					n++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", node, b.Prefix, n, b.Time.Format(time.RFC3339))
		}
	}
	fmt.Fprintln(tw, "\nADDRESS\tNODE\tCONTAINER\tIFNAME\tSINCE")
	for _, al := range allocs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", al.IP, al.Node, al.Owner.ContainerID, al.Owner.IfName, al.Time.Format(time.RFC3339))
	}
	return tw.Flush()
}

// releaseNode frees node's allocations and blocks, refusing when the node
// allocated or claimed within grace of now unless force.
func releaseNode(ctx context.Context, st store.Store, node string, grace time.Duration, force bool, now time.Time, w io.Writer) error {
	allocs, err := st.Allocations(ctx, node)
	if err != nil {
		return err
	}
	blocks, err := st.Blocks(ctx)
	if err != nil {
		return err
	}
	var last time.Time
	var mine []netip.Prefix
	for _, al := range allocs {
		if al.Time.After(last) {
			last = al.Time
		}
	}
	for _, b := range blocks {
		if b.Node == node {
			mine = append(mine, b.Prefix)
			if b.Time.After(last) {
				last = b.Time
			}
		}
	}
	if len(allocs) == 0 && len(mine) == 0 {
		fmt.Fprintf(w, "node %q holds no block and no allocation\n", node)
		return nil
	}
	if !force && now.Sub(last) < grace {
		return fmt.Errorf("node %q allocated or claimed a block at %s, within the last %v: it may still be running; remove it from the cluster first, or pass --force",
			node, last.Format(time.RFC3339), grace)
	}
	released := map[store.Attachment]bool{}
	n := 0
	for _, al := range allocs {
		if released[al.Owner] {
			continue
		}
		released[al.Owner] = true
		ips, err := st.Release(ctx, node, al.Owner)
		if err != nil {
			return err
		}
		n += len(ips)
	}
	freed, err := st.ReleaseBlocks(ctx, node)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "node %q: released %d addresses of %d attachments and %d blocks\n", node, n, len(released), len(freed))
	return nil
}
