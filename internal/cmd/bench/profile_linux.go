//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/devconf"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/hostlocal"
)

// The keys of the profile's steps.
const (
	stepFloor       = "floor"
	stepFloorNoTHP  = "floor_disablethp"
	stepIPVLANStart = "ipvlan_version"
	stepIPAMStart   = "host_local_version"
	stepIPAMAdd     = "host_local_add"
	stepIPAMCheck   = "host_local_check"
	stepIPAMDel     = "host_local_del"
	stepNSOpen      = "netns_open"
	stepHandle      = "netlink_handle"
	stepSetns       = "setns_round_trip"
	stepLookup      = "link_lookup"
	stepLinkAdd     = "link_add_ipvlan"
	stepARPNotify   = "arp_notify"
	stepSysctl      = "sysctls"
	stepAddrAdd     = "addr_add"
	stepLinkUp      = "link_up"
	stepRouteAdd    = "route_add"
	stepAddrDump    = "addr_dump"
	stepRouteDump   = "route_dump"
	stepLinkDel     = "link_del"
	stepAloneAdd    = "ipvlan_add_alone"
	stepAloneCheck  = "ipvlan_check_alone"
	stepAloneDel    = "ipvlan_del_alone"
	stepInProcAdd   = "host_local_add_in_process"
	stepInProcCheck = "host_local_check_in_process"
	stepInProcDel   = "host_local_del_in_process"
)

// stepWhat says what a step of the profile measures.
func stepWhat(key string) string {
	switch key {
	case stepFloor:
		return "process start+exit: noop (the floor)"
	case stepFloorNoTHP:
		return "the same, heap off huge pages, as ours"
	case stepIPVLANStart:
		return "ipvlan VERSION: start, Go init, VERSION"
	case stepIPAMStart:
		return "host-local VERSION: start, Go init, VERSION"
	case stepIPAMAdd:
		return "host-local ADD, exec'd alone"
	case stepIPAMCheck:
		return "host-local CHECK, exec'd alone"
	case stepIPAMDel:
		return "host-local DEL, exec'd alone"
	case stepNSOpen:
		return "open CNI_NETNS (ns.GetNS)"
	case stepHandle:
		return "netlink handle in a netns (open+close)"
	case stepSetns:
		return "setns round trip (ns.Do, empty)"
	case stepLookup:
		return "ip link show <name> (LinkByName)"
	case stepLinkAdd:
		return "ip link add ... name eth0 netns <c>"
	case stepARPNotify:
		return "arp_notify=1 by netlink (devconf)"
	case stepSysctl:
		return "sysctl disable_ipv6 written"
	case stepAddrAdd:
		return "ip addr add <ip>/16 dev eth0"
	case stepLinkUp:
		return "ip link set eth0 up"
	case stepRouteAdd:
		return "ip route add default via <gw>"
	case stepAddrDump:
		return "ip addr show dev eth0 (dump)"
	case stepRouteDump:
		return "ip route show dev eth0 (dump)"
	case stepLinkDel:
		return "ip link del eth0"
	case stepAloneAdd:
		return "ipvlan ADD exec'd alone (no libcni)"
	case stepAloneCheck:
		return "ipvlan CHECK exec'd alone (no libcni)"
	case stepAloneDel:
		return "ipvlan DEL exec'd alone (no libcni)"
	case stepInProcAdd:
		return "host-local ADD in process (hostlocal)"
	case stepInProcCheck:
		return "host-local CHECK in process (hostlocal)"
	case stepInProcDel:
		return "host-local DEL in process (hostlocal)"
	}
	return key
}

// profile measures the pieces ours is made of, runs times each, the
// reference's where it has the same piece: process start-up (the floor
// among them), the plugins exec'd alone, and the kernel work of one ADD,
// CHECK and DEL done in process. Measurements of ours and of the reference
// alternate, so that a change in the machine's load hits both. It runs
// when no container is attached; containers must be empty namespaces.
func profile(ctx context.Context, ours, ref *impl, containers []ns.NetNS, floor, tmp string) (*Profile, error) {
	p := &Profile{}
	add := func(key string, o Dist, r *Dist) {
		p.Steps = append(p.Steps, Step{Key: key, What: stepWhat(key), Ours: o, Reference: r})
	}

	starts, err := measureStarts(ctx, ours, ref, floor, len(containers))
	if err != nil {
		return nil, err
	}
	add(stepFloor, starts[0], nil)
	add(stepFloorNoTHP, starts[5], nil)
	add(stepIPVLANStart, starts[1], &starts[2])
	add(stepIPAMStart, starts[3], &starts[4])

	ipam := func(im *impl) execTarget {
		return execTarget{im: im, plugin: "host-local", dataDir: filepath.Join(tmp, im.name, "ipam-profile"), conf: map[string]any{
			"cniVersion": "1.0.0",
			"name":       "bench-ipam",
			"ipam":       ipamConf("10.129.0.0/16", filepath.Join(tmp, im.name, "ipam-profile")),
		}}
	}
	verbs, err := execVerbs(ctx, []execTarget{ipam(ours), ipam(ref)}, containers)
	if err != nil {
		return nil, err
	}
	for v, key := range []string{stepIPAMAdd, stepIPAMCheck, stepIPAMDel} {
		add(key, verbs[0][v], &verbs[1][v])
	}

	inProcDir := filepath.Join(tmp, ours.name, "ipam-in-process")
	inProc, err := profileInProcess(ctx, containers, inProcDir)
	if err != nil {
		return nil, err
	}
	found, err := ours.env.leaks(nil, inProcDir)
	if err != nil {
		return nil, err
	}
	if len(found) > 0 {
		return nil, &leakError{fmt.Sprintf("ours: profile: host-local DEL in process left %v", found)}
	}
	for v, key := range []string{stepInProcAdd, stepInProcCheck, stepInProcDel} {
		add(key, inProc[v], nil)
	}

	alone := execTarget{im: ours, plugin: "ipvlan", dataDir: filepath.Join(tmp, ours.name, "ipvlan-profile"), conf: map[string]any{
		"cniVersion": "1.0.0",
		"name":       "bench-alone",
		"type":       "ipvlan",
		"master":     masterName,
		"mode":       "l2",
		"ipam":       ipamConf("10.130.0.0/16", filepath.Join(tmp, ours.name, "ipvlan-profile")),
	}}
	if verbs, err = execVerbs(ctx, []execTarget{alone}, containers); err != nil {
		return nil, err
	}
	for v, key := range []string{stepAloneAdd, stepAloneCheck, stepAloneDel} {
		add(key, verbs[0][v], nil)
	}

	kernel, err := profileKernel(ours.env, containers)
	if err != nil {
		return nil, err
	}
	for _, key := range []string{stepNSOpen, stepHandle, stepSetns, stepLookup, stepLinkAdd, stepARPNotify, stepSysctl,
		stepAddrAdd, stepLinkUp, stepRouteAdd, stepAddrDump, stepRouteDump, stepLinkDel} {
		add(key, kernel[key], nil)
	}
	return p, nil
}

// addAttached measures the kernel steps again in containers, while the
// fill is attached, and records them beside the idle ones.
func (p *Profile) addAttached(e *env, containers []ns.NetNS) error {
	return p.addKernel(e, containers, func(s *Step, d Dist) { s.Attached = &d })
}

// addNamespaces runs the kernel steps again beside the fill's namespaces,
// with nothing attached to them.
func (p *Profile) addNamespaces(e *env, containers []ns.NetNS) error {
	return p.addKernel(e, containers, func(s *Step, d Dist) { s.Namespaces = &d })
}

func (p *Profile) addKernel(e *env, containers []ns.NetNS, set func(*Step, Dist)) error {
	kernel, err := profileKernel(e, containers)
	if err != nil {
		return err
	}
	for i := range p.Steps {
		if d, ok := kernel[p.Steps[i].Key]; ok {
			set(&p.Steps[i], d)
		}
	}
	return nil
}

// addBreakdowns rebuilds ours' ADD, CHECK and DEL from the steps each
// performs, beside idle, their latency through libcni with no other
// container attached. The recipes follow plugins/main/ipvlan as it is:
// host-local runs in the plugin's process; ADD's steps run one after the
// other; CHECK and DEL ask IPAM while the link is read or deleted
// (branches "link" and "lease"). Update them when the plugin changes.
func (p *Profile) addBreakdowns(idle Verbs) {
	seq := func(key string, count int) Part { return Part{Key: key, Count: count} }
	link := func(key string, count int) Part { return Part{Key: key, Count: count, Branch: "link"} }
	lease := func(key string) Part { return Part{Key: key, Count: 1, Branch: "lease"} }
	p.Breakdowns = []Breakdown{
		p.breakdown("ADD", idle.Add.P50, stepAloneAdd, []Part{
			seq(stepIPVLANStart, 1), seq(stepNSOpen, 1), seq(stepHandle, 2), seq(stepLookup, 1), // the master
			seq(stepLinkAdd, 1), seq(stepLookup, 1), seq(stepInProcAdd, 1),
			seq(stepSetns, 1), seq(stepARPNotify, 1), seq(stepSysctl, 1),
			seq(stepAddrAdd, 1), seq(stepLinkUp, 1), seq(stepRouteAdd, 1),
		}),
		p.breakdown("CHECK", idle.Check.P50, stepAloneCheck, []Part{
			seq(stepIPVLANStart, 1),
			link(stepNSOpen, 1), link(stepHandle, 2), link(stepLookup, 2), link(stepAddrDump, 1), link(stepRouteDump, 1),
			lease(stepInProcCheck),
		}),
		p.breakdown("DEL", idle.Del.P50, stepAloneDel, []Part{
			seq(stepIPVLANStart, 1),
			link(stepNSOpen, 1), link(stepHandle, 1), link(stepLookup, 1), link(stepLinkDel, 1),
			lease(stepInProcDel),
		}),
	}
}

// breakdown prices parts at the p50 of their steps. Sequential parts add
// up; of the branches that run concurrently only the longest counts.
func (p *Profile) breakdown(verb string, measured float64, alone string, parts []Part) Breakdown {
	b := Breakdown{Verb: verb, Measured: measured}
	p50 := map[string]float64{}
	for _, s := range p.Steps {
		p50[s.Key] = s.Ours.P50
	}
	branches := map[string]float64{}
	for _, part := range parts {
		part.MS = round3(float64(part.Count) * p50[part.Key])
		b.Parts = append(b.Parts, part)
		if part.Branch == "" {
			b.Sum += part.MS
		} else {
			branches[part.Branch] += part.MS
		}
	}
	longest := 0.0
	for name, v := range branches {
		if v > longest || (v == longest && name < b.Longest) {
			longest, b.Longest = v, name
		}
	}
	b.Sum = round3(b.Sum + longest)
	b.Alone = p50[alone]
	return b
}

// profileInProcess times host-local's verbs as ours runs them, in the
// plugin's process (package hostlocal), without a process start: ADD in
// every container, then CHECK, then DEL, leasing from dataDir. It returns
// ADD, CHECK and DEL.
func profileInProcess(ctx context.Context, containers []ns.NetNS, dataDir string) ([3]Dist, error) {
	var out [3]Dist
	conf := map[string]any{"cniVersion": "1.0.0", "name": "bench-in-process", "ipam": ipamConf("10.131.0.0/16", dataDir)}
	plugin := hostlocal.OnDisk(nil)
	prevs := make([][]byte, len(containers))
	var ds [3][]time.Duration
	for v, verb := range []string{"ADD", "CHECK", "DEL"} {
		for i, c := range containers {
			cc := maps.Clone(conf)
			if prevs[i] != nil {
				cc["prevResult"] = json.RawMessage(prevs[i])
			}
			stdin, err := json.Marshal(cc)
			if err != nil {
				return out, err
			}
			args := &pluginmain.CmdArgs{ContainerID: fmt.Sprintf("in-process-%05d", i), Netns: c.Path(), IfName: "eth0", StdinData: stdin}
			start := time.Now()
			switch verb {
			case "ADD":
				var r *current.Result
				if r, err = plugin.AddResult(ctx, args); err == nil {
					prevs[i], err = json.Marshal(r)
				}
			case "CHECK":
				err = plugin.Check(ctx, args)
			case "DEL":
				err = plugin.Del(ctx, args)
			}
			ds[v] = append(ds[v], time.Since(start))
			if err != nil {
				return out, fmt.Errorf("profile: host-local %s in process %s: %w", verb, args.ContainerID, err)
			}
		}
	}
	for v := range out {
		out[v] = summarize(ds[v])
	}
	return out, nil
}

func ipamConf(subnet, dataDir string) map[string]any {
	return map[string]any{
		"type":    "host-local",
		"ranges":  [][]map[string]string{{{"subnet": subnet}}},
		"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
		"dataDir": dataDir,
	}
}

// measureStarts times, runs times in turn, the floor (noop) and VERSION of
// ours' and the reference's ipvlan and host-local, after a few untimed
// rounds to bring the binaries into the page cache: process start-up, Go
// runtime and package initialisation, the VERSION answer. It returns
// floor, ipvlan ours, ipvlan reference, host-local ours, host-local
// reference, and the floor again with GODEBUG=disablethp=1, the default
// ours are built with (vmtest.PluginLDFlags): what transparent huge pages
// cost a start.
func measureStarts(ctx context.Context, ours, ref *impl, floor string, runs int) ([6]Dist, error) {
	var out [6]Dist
	raw := &invoke.RawExec{Stderr: os.Stderr}
	env := append(os.Environ(), "CNI_COMMAND=VERSION")
	stdin := []byte(`{"cniVersion":"1.0.0"}`)
	cmds := []func() error{
		func() error { return runFloor(floor) },
	}
	for _, plugin := range []string{"ipvlan", "host-local"} {
		for _, im := range []*impl{ours, ref} {
			path := filepath.Join(im.dir, plugin)
			cmds = append(cmds, func() error {
				if _, err := raw.ExecPlugin(ctx, path, stdin, env); err != nil {
					return fmt.Errorf("%s: %s VERSION: %w", im.name, plugin, err)
				}
				return nil
			})
		}
	}
	cmds = append(cmds, func() error { return runFloor(floor, "GODEBUG=disablethp=1") })
	ds := make([][]time.Duration, len(cmds))
	for i := range runs + 3 {
		for k, cmd := range cmds {
			start := time.Now()
			if err := cmd(); err != nil {
				return out, err
			}
			if i >= 3 {
				ds[k] = append(ds[k], time.Since(start))
			}
		}
	}
	for k := range out {
		out[k] = summarize(ds[k])
	}
	return out, nil
}

// execTarget is a plugin of an implementation exec'd with conf, which
// leases from dataDir.
type execTarget struct {
	im      *impl
	plugin  string
	conf    map[string]any
	dataDir string
}

// execVerbs execs each target's plugin directly, without libcni, from the
// host namespace, as libcni would (the previous result added for CHECK and
// DEL): ADD in every container, then CHECK, then DEL, the targets taking
// turns. It returns the ADD, CHECK and DEL latency of each target and
// fails if a target left a link or a lease.
func execVerbs(ctx context.Context, targets []execTarget, containers []ns.NetNS) ([][3]Dist, error) {
	ds := make([][3][]time.Duration, len(targets))
	prevs := make([][][]byte, len(targets))
	for t := range targets {
		prevs[t] = make([][]byte, len(containers))
	}
	for v, cmd := range []string{"ADD", "CHECK", "DEL"} {
		for i, c := range containers {
			for t, tg := range targets {
				d, prev, err := tg.exec(ctx, cmd, i, c, prevs[t][i])
				if err != nil {
					return nil, err
				}
				if cmd == "ADD" {
					prevs[t][i] = prev
				}
				ds[t][v] = append(ds[t][v], d)
			}
		}
	}
	out := make([][3]Dist, len(targets))
	for t, tg := range targets {
		for v := range 3 {
			out[t][v] = summarize(ds[t][v])
		}
		var cs []ns.NetNS
		if tg.plugin == "ipvlan" {
			cs = containers
		}
		found, err := tg.im.env.leaks(cs, tg.dataDir)
		if err != nil {
			return nil, err
		}
		if len(found) > 0 {
			return nil, &leakError{fmt.Sprintf("%s: profile: %s DEL left %v", tg.im.name, tg.plugin, found)}
		}
	}
	return out, nil
}

// exec runs one verb in container i and returns its latency and, for ADD,
// the result in the configuration's version.
func (tg execTarget) exec(ctx context.Context, cmd string, i int, c ns.NetNS, prev []byte) (time.Duration, []byte, error) {
	conf := maps.Clone(tg.conf)
	if prev != nil {
		conf["prevResult"] = json.RawMessage(prev)
	}
	stdin, err := json.Marshal(conf)
	if err != nil {
		return 0, nil, err
	}
	path := filepath.Join(tg.im.dir, tg.plugin)
	args := &invoke.Args{Command: cmd, ContainerID: fmt.Sprintf("%s-%s-%05d", tg.im.name, tg.plugin, i),
		NetNS: c.Path(), IfName: "eth0", Path: tg.im.dir}
	var (
		d time.Duration
		r types.Result
	)
	err = tg.im.env.host.Do(func(ns.NetNS) error {
		var err error
		start := time.Now()
		if cmd == "ADD" {
			r, err = invoke.ExecPluginWithResult(ctx, path, stdin, args, nil)
		} else {
			err = invoke.ExecPluginWithoutResult(ctx, path, stdin, args, nil)
		}
		d = time.Since(start)
		return err
	})
	if err != nil {
		return d, nil, fmt.Errorf("%s: %s %s %s exec'd alone: %w", tg.im.name, tg.plugin, cmd, args.ContainerID, err)
	}
	if r == nil {
		return d, nil, nil
	}
	res, err := current.NewResultFromResult(r)
	if err == nil {
		prev, err = json.Marshal(res)
	}
	if err != nil {
		return d, nil, fmt.Errorf("%s: %s ADD %s result: %w", tg.im.name, tg.plugin, args.ContainerID, err)
	}
	return d, prev, nil
}

// profileKernel performs, in process, the kernel work of one ADD, CHECK
// and DEL of ours in each container, timing each step: the same netlink
// requests the plugin sends, without the process around them.
func profileKernel(e *env, containers []ns.NetNS) (map[string]Dist, error) {
	ds := map[string][]time.Duration{}
	timed := func(key string, f func() error) error {
		start := time.Now()
		err := f()
		ds[key] = append(ds[key], time.Since(start))
		if err != nil {
			return fmt.Errorf("profile: %s: %w", stepWhat(key), err)
		}
		return nil
	}
	gw := net.ParseIP("10.128.0.1")
	for i, c := range containers {
		var n ns.NetNS
		if err := timed(stepNSOpen, func() (err error) { n, err = ns.GetNS(c.Path()); return err }); err != nil {
			return nil, err
		}
		if err := timed(stepHandle, func() error {
			h, err := handleAt(n)
			if err == nil {
				h.Close()
			}
			return err
		}); err != nil {
			n.Close()
			return nil, err
		}
		h, err := handleAt(n)
		if err != nil {
			n.Close()
			return nil, err
		}
		err = profileLink(e, n, h, timed, i, gw)
		h.Close()
		n.Close()
		if err != nil {
			return nil, err
		}
	}
	out := map[string]Dist{}
	for k, v := range ds {
		out[k] = summarize(v)
	}
	return out, nil
}

func profileLink(e *env, n ns.NetNS, h *netlink.Handle, timed func(string, func() error) error, i int, gw net.IP) error {
	if err := timed(stepSetns, func() error { return n.Do(func(ns.NetNS) error { return nil }) }); err != nil {
		return err
	}
	var master netlink.Link
	if err := timed(stepLookup, func() (err error) { master, err = e.hostH.LinkByName(masterName); return err }); err != nil {
		return err
	}
	iv := &netlink.IPVlan{
		LinkAttrs: netlink.LinkAttrs{Name: "eth0", ParentIndex: master.Attrs().Index, Namespace: netlink.NsFd(int(n.Fd()))},
		Mode:      netlink.IPVLAN_MODE_L2,
		Flag:      netlink.IPVLAN_FLAG_BRIDGE,
	}
	if err := timed(stepLinkAdd, func() error { return e.hostH.LinkAdd(iv) }); err != nil {
		return err
	}
	link, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("profile: look up eth0: %w", err)
	}
	ip := net.IPv4(10, 128, 250+byte(i/250), byte(2+i%250))
	steps := []struct {
		key string
		in  ns.NetNS // timed inside this namespace, the switch excluded; nil: where the bench runs
		f   func() error
	}{
		{stepARPNotify, n, func() error { return devconf.SetIPv4(link.Attrs().Index, devconf.ARPNotify, 1) }},
		{stepSysctl, n, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", []byte("1"), 0o644)
		}},
		{stepAddrAdd, nil, func() error {
			return h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(16, 32)}})
		}},
		{stepLinkUp, nil, func() error { return h.LinkSetUp(link) }},
		{stepRouteAdd, nil, func() error {
			_, dst, _ := net.ParseCIDR("0.0.0.0/0")
			return h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw})
		}},
		{stepAddrDump, nil, func() error { _, err := h.AddrList(link, netlink.FAMILY_ALL); return err }},
		{stepRouteDump, nil, func() error {
			_, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
				netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
			return err
		}},
		{stepLinkDel, nil, func() error { return h.LinkDel(link) }},
	}
	for _, s := range steps {
		run := func() error { return timed(s.key, s.f) }
		if s.in != nil {
			run = func() error { return s.in.Do(func(ns.NetNS) error { return timed(s.key, s.f) }) }
		}
		if err := run(); err != nil {
			_ = h.LinkDel(link)
			return err
		}
	}
	return nil
}
