//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// The integration tests drive the built ipvlan and host-local binaries
// through libcni, as a container runtime does. Each test builds a world of
// its own: a "host" netns holding the master (the plugin runs with it as
// its current netns), one or more container netns, a host-local data
// directory and a libcni cache directory.

const (
	testNet    = "ipvlantest" // network name; also host-local's directory in dataDir
	testMaster = "master0"    // the dummy master every netFixture starts with
	testIf     = "eth0"       // CNI_IFNAME unless a test says otherwise
	testSubnet = "10.10.0.0/24"

	libcniTimeout = 30 * time.Second
)

// wantVersions are the CNI versions the plugin must accept.
var wantVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// netFixture is one test's world: the host netns with a dummy master, a libcni
// client with a private cache and a host-local data directory.
type netFixture struct {
	t       *testing.T
	host    ns.NetNS
	hostH   *netlink.Handle
	master  netlink.Link
	cni     *libcni.CNIConfig
	dataDir string
}

// newNetFixture checks that the kernel can run the test, then creates the host
// netns with an up dummy master named testMaster.
func newNetFixture(t *testing.T) *netFixture {
	t.Helper()
	testenv.RequireKernel(t)
	host := testenv.NewNS(t)
	return &netFixture{
		t:       t,
		host:    host,
		hostH:   testenv.Handle(t, host),
		master:  testenv.AddDummy(t, host, testMaster),
		cni:     libcniWithCache(t),
		dataDir: t.TempDir(),
	}
}

// testContainer is a container's netns and a netlink handle bound to it.
type testContainer struct {
	id string
	ns ns.NetNS
	h  *netlink.Handle
}

// libcniWithCache is a libcni client with a cache directory of its own.
func libcniWithCache(t *testing.T) *libcni.CNIConfig {
	t.Helper()
	return libcni.NewCNIConfigWithCacheDir([]string{testenv.PluginDir(t)}, t.TempDir(), nil)
}

// newContainer creates a netns for a container with the given ID.
func (f *netFixture) newContainer(id string) *testContainer {
	f.t.Helper()
	n := testenv.NewNS(f.t)
	return &testContainer{id: id, ns: n, h: testenv.Handle(f.t, n)}
}

// rt is the runtime configuration for this container with CNI_IFNAME eth0.
func (c *testContainer) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.id, NetNS: c.ns.Path(), IfName: testIf}
}

// attachment names this container's eth0 for GC.
func (c *testContainer) attachment() types.GCAttachment {
	return types.GCAttachment{ContainerID: c.id, IfName: testIf}
}

// ipRange is one host-local range set holding one range.
type ipRange map[string]any

func subnetRange(cidr string) ipRange { return ipRange{"subnet": cidr} }

// singleIPRange is a range handing out exactly one address, so a test knows the
// container's address before ADD.
func singleIPRange(cidr, ip string) ipRange {
	return ipRange{"subnet": cidr, "rangeStart": ip, "rangeEnd": ip}
}

// hostLocalIPAM is a host-local IPAM section storing leases in dataDir.
func hostLocalIPAM(dataDir string, sets ...ipRange) map[string]any {
	ranges := make([][]ipRange, 0, len(sets))
	for _, s := range sets {
		ranges = append(ranges, []ipRange{s})
	}
	return map[string]any{"type": "host-local", "dataDir": dataDir, "ranges": ranges}
}

// plugin is the ipvlan plugin's config: master0, l2/bridge by default,
// host-local on testSubnet, with fields overriding it; a nil value removes
// the key.
func (f *netFixture) plugin(fields map[string]any) map[string]any {
	p := map[string]any{
		"type":   "ipvlan",
		"master": testMaster,
		"ipam":   hostLocalIPAM(f.dataDir, subnetRange(testSubnet)),
	}
	for k, v := range fields {
		if v == nil {
			delete(p, k)
			continue
		}
		p[k] = v
	}
	return p
}

// list wraps one plugin config in a network list of the given version.
func (f *netFixture) list(version string, plugin map[string]any) *libcni.NetworkConfigList {
	f.t.Helper()
	b, err := json.Marshal(map[string]any{
		"cniVersion": version,
		"name":       testNet,
		"plugins":    []any{plugin},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		f.t.Fatalf("parse network list %s: %v", b, err)
	}
	return l
}

// inHost runs fn with the host netns as the current netns of a locked
// thread, so the plugin processes libcni starts inherit it.
func (f *netFixture) inHost(fn func(ctx context.Context) error) error {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), libcniTimeout)
	defer cancel()
	var err error
	if doErr := f.host.Do(func(ns.NetNS) error { err = fn(ctx); return nil }); doErr != nil {
		f.t.Fatalf("enter host netns: %v", doErr)
	}
	return err
}

func (f *netFixture) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error) {
	f.t.Helper()
	var res types.Result
	err := f.inHost(func(ctx context.Context) (err error) {
		res, err = f.cni.AddNetworkList(ctx, l, rt)
		return err
	})
	return res, err
}

// mustAdd runs ADD, fails the test on error and returns the result
// converted to the current version.
func (f *netFixture) mustAdd(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *current.Result {
	f.t.Helper()
	res, err := f.add(l, rt)
	if err != nil {
		f.t.Fatalf("ADD %s: %v", rt.ContainerID, err)
	}
	return asCurrent(f.t, res)
}

func asCurrent(t *testing.T, res types.Result) *current.Result {
	t.Helper()
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatalf("convert result: %v", err)
	}
	return cur
}

func (f *netFixture) check(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	f.t.Helper()
	return f.inHost(func(ctx context.Context) error { return f.cni.CheckNetworkList(ctx, l, rt) })
}

func (f *netFixture) del(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	f.t.Helper()
	return f.inHost(func(ctx context.Context) error { return f.cni.DelNetworkList(ctx, l, rt) })
}

func (f *netFixture) status(l *libcni.NetworkConfigList) error {
	f.t.Helper()
	return f.inHost(func(ctx context.Context) error { return f.cni.GetStatusNetworkList(ctx, l) })
}

func (f *netFixture) gc(l *libcni.NetworkConfigList, valid ...types.GCAttachment) error {
	f.t.Helper()
	return f.inHost(func(ctx context.Context) error {
		return f.cni.GCNetworkList(ctx, l, &libcni.GCArgs{ValidAttachments: valid})
	})
}

// execRaw runs the ipvlan binary with the given stdin and environment, as
// libcni would, for inputs libcni itself refuses before the plugin runs
// (an invalid CNI_IFNAME, undecodable JSON).
func (f *netFixture) execRaw(command string, stdin []byte, rt *libcni.RuntimeConf) error {
	f.t.Helper()
	dir := testenv.PluginDir(f.t)
	path, err := invoke.FindInPath("ipvlan", []string{dir})
	if err != nil {
		f.t.Fatalf("find ipvlan: %v", err)
	}
	args := &invoke.Args{
		Command:     command,
		ContainerID: rt.ContainerID,
		NetNS:       rt.NetNS,
		IfName:      rt.IfName,
		Path:        dir,
	}
	return f.inHost(func(ctx context.Context) error {
		_, err := invoke.ExecPluginWithResult(ctx, path, stdin, args, nil)
		return err
	})
}

// pluginStdin is the single-plugin stdin libcni would send for plugin.
func pluginStdin(t *testing.T, version string, plugin map[string]any) []byte {
	t.Helper()
	m := map[string]any{"cniVersion": version, "name": testNet}
	for k, v := range plugin {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cniErrorOf returns the CNI error code and its message and details, or
// ok false when err carries no *types.Error.
func cniErrorOf(err error) (code uint, text string, ok bool) {
	var e *types.Error
	if !errors.As(err, &e) {
		return 0, "", false
	}
	return e.Code, e.Msg + " " + e.Details, true
}

// wantCNIError fails the test unless err is a CNI error with code whose
// message and details contain every one of substrs.
func wantCNIError(t *testing.T, err error, code uint, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("got success, want CNI error code %d", code)
		return
	}
	got, text, ok := cniErrorOf(err)
	if !ok {
		t.Errorf("got error %q (%T), want a CNI error with code %d", err, err, code)
		return
	}
	if got != code {
		t.Errorf("error code = %d (%q), want %d", got, text, code)
	}
	for _, s := range substrs {
		if !strings.Contains(text, s) {
			t.Errorf("error %q does not name %q", text, s)
		}
	}
}

// leaseDir is host-local's directory for this fixture's network.
func (f *netFixture) leaseDir() string { return filepath.Join(f.dataDir, testNet) }

// leases lists the addresses host-local holds leases for: the files of the
// network directory named by an IP address.
func (f *netFixture) leases() []string {
	f.t.Helper()
	entries, err := os.ReadDir(f.leaseDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		f.t.Fatalf("read leases: %v", err)
	}
	var ips []string
	for _, e := range entries {
		if e.Type().IsRegular() && net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	slices.Sort(ips)
	return ips
}

// leaseOwner is the container ID a lease file names.
func (f *netFixture) leaseOwner(ip string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.leaseDir(), ip))
	if err != nil {
		f.t.Fatalf("read lease %s: %v", ip, err)
	}
	id, _, _ := strings.Cut(string(b), "\r\n")
	return strings.TrimSpace(id)
}

// requireNothingLeft checks what a failed ADD or a DEL must leave: no link
// in the container netns but lo and keep, no ipvlan link in the host netns
// (where a link would be if its move failed), no lease.
func (f *netFixture) requireNothingLeft(c *testContainer, keep ...string) {
	f.t.Helper()
	if got := linkNamesWhere(f.t, c.h, func(l netlink.Link) bool {
		return l.Attrs().Name != "lo" && !slices.Contains(keep, l.Attrs().Name)
	}); len(got) > 0 {
		f.t.Errorf("links left in the container netns: %v", got)
	}
	if got := linkNamesWhere(f.t, f.hostH, func(l netlink.Link) bool { return l.Type() == "ipvlan" }); len(got) > 0 {
		f.t.Errorf("ipvlan links left in the host netns: %v", got)
	}
	if got := f.leases(); len(got) > 0 {
		f.t.Errorf("leases left in %s: %v", f.leaseDir(), got)
	}
}

func linkNamesWhere(t *testing.T, h *netlink.Handle, keep func(netlink.Link) bool) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("ip link show: %v", err)
	}
	var names []string
	for _, l := range links {
		if keep(l) {
			names = append(names, fmt.Sprintf("%s(%s)", l.Attrs().Name, l.Type()))
		}
	}
	return names
}

// ctrLink is what a test reads back of a container's link.
type ctrLink struct {
	Type   string
	Mode   netlink.IPVlanMode
	Flag   netlink.IPVlanFlag
	Parent int
	MAC    string
	MTU    int
	Up     bool
	Addrs  []string
}

// state reads the link name in the container: ip -d addr show name.
func (c *testContainer) state(t *testing.T, name string) ctrLink {
	t.Helper()
	l, err := c.h.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %s in the container: %v", name, err)
	}
	s := ctrLink{
		Type:   l.Type(),
		Parent: l.Attrs().ParentIndex,
		MAC:    l.Attrs().HardwareAddr.String(),
		MTU:    l.Attrs().MTU,
		Up:     l.Attrs().Flags&net.FlagUp != 0,
		Addrs:  globalAddrsOf(t, c.h, l),
	}
	if iv, ok := l.(*netlink.IPVlan); ok {
		s.Mode, s.Flag = iv.Mode, iv.Flag
	}
	return s
}

// globalAddrsOf are the link's global addresses, v4 then v6, as CIDRs.
func globalAddrsOf(t *testing.T, h *netlink.Handle, l netlink.Link) []string {
	t.Helper()
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		addrs, err := h.AddrList(l, fam)
		if err != nil {
			t.Fatalf("ip addr show %s: %v", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if a.Scope == int(netlink.SCOPE_UNIVERSE) {
				out = append(out, a.IPNet.String())
			}
		}
	}
	return out
}

// hasLink reports whether the container has a link named name.
func (c *testContainer) hasLink(t *testing.T, name string) bool {
	t.Helper()
	_, err := c.h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case err == nil:
		return true
	case errors.As(err, &notFound):
		return false
	default:
		t.Fatalf("look up %s: %v", name, err)
		return false
	}
}

// ipv6Of reads whether IPv6 is on for the container's link name: its
// disable_ipv6 sysctl, and whether the kernel gave it a link-local address
// (which it does when the link comes up with IPv6 on).
func (c *testContainer) ipv6Of(t *testing.T, name string) (disabled string, linkLocal bool) {
	t.Helper()
	disabled = c.sysctl(t, "ipv6", name, "disable_ipv6")
	l, err := c.h.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	addrs, err := c.h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatalf("ip -6 addr show %s: %v", name, err)
	}
	for _, a := range addrs {
		linkLocal = linkLocal || a.IP.IsLinkLocalUnicast()
	}
	return disabled, linkLocal
}

// sysctl reads /proc/sys/net/<family>/conf/<name>/<key> in the container.
func (c *testContainer) sysctl(t *testing.T, family, name, key string) string {
	t.Helper()
	var v string
	err := c.ns.Do(func(ns.NetNS) error {
		b, err := os.ReadFile(filepath.Join("/proc/sys/net", family, "conf", name, key))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatalf("read %s of %s: %v", key, name, err)
	}
	return v
}

// hasNeigh reports whether the container has a neighbour entry for ip on
// its testIf.
func (c *testContainer) hasNeigh(t *testing.T, ip net.IP) bool {
	t.Helper()
	l, err := c.h.LinkByName(testIf)
	if err != nil {
		t.Fatalf("look up %s: %v", testIf, err)
	}
	neighs, err := c.h.NeighList(l.Attrs().Index, familyOf(ip))
	if err != nil {
		t.Fatalf("ip neigh show dev %s: %v", testIf, err)
	}
	for _, n := range neighs {
		if n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// routes lists the container's routes through link as "dst via gw", the
// kernel's own prefix and local routes left out.
func (c *testContainer) routes(t *testing.T, name string) []string {
	t.Helper()
	l, err := c.h.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := c.h.RouteList(l, fam)
		if err != nil {
			t.Fatalf("ip route show dev %s: %v", name, err)
		}
		for _, r := range rs {
			if r.Gw == nil {
				continue
			}
			dst := "default"
			if r.Dst != nil && !isDefaultDst(r.Dst) {
				dst = r.Dst.String()
			}
			out = append(out, dst+" via "+r.Gw.String())
		}
	}
	slices.Sort(out)
	return out
}

func isDefaultDst(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// resultIP and resultIface are the parts of a result the tests compare.
type resultIP struct {
	Address   string
	Interface int
}

type resultIface struct {
	Name, Mac, Sandbox string
}

type resultShape struct {
	Interfaces []resultIface
	IPs        []resultIP
}

func shapeOf(r *current.Result) resultShape {
	var s resultShape
	for _, i := range r.Interfaces {
		s.Interfaces = append(s.Interfaces, resultIface{i.Name, i.Mac, i.Sandbox})
	}
	for _, ip := range r.IPs {
		idx := -1
		if ip.Interface != nil {
			idx = *ip.Interface
		}
		s.IPs = append(s.IPs, resultIP{ip.Address.String(), idx})
	}
	return s
}

// bareIPs are the bare addresses of a result, sorted.
func bareIPs(r *current.Result) []string {
	var ips []string
	for _, ip := range r.IPs {
		ips = append(ips, ip.Address.IP.String())
	}
	slices.Sort(ips)
	return ips
}

// runInNS runs a program with n as its netns and returns its combined output.
func runInNS(n ns.NetNS, name string, args ...string) (string, error) {
	var out []byte
	var err error
	if doErr := n.Do(func(ns.NetNS) error {
		out, err = exec.Command(name, args...).CombinedOutput()
		return nil
	}); doErr != nil {
		return "", doErr
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// pingOK pings ip from n, a few times since the first echo may race ARP in
// the emulated guest.
func pingOK(n ns.NetNS, ip string) error {
	var err error
	for range 3 {
		if _, err = runInNS(n, "/bin/ping", "-c", "1", "-W", "2", ip); err == nil {
			return nil
		}
	}
	return err
}

// pingFails pings ip from n once, with a short wait, and reports an error
// if an answer comes.
func pingFails(n ns.NetNS, ip string) error {
	out, err := runInNS(n, "/bin/ping", "-c", "1", "-W", "1", ip)
	if err == nil {
		return fmt.Errorf("ping %s answered: %s", ip, out)
	}
	return nil
}

// pollUntil calls cond every 20ms until it returns true or timeout passes.
func pollUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// segmentPeer is a netns standing in for another host on the master's segment,
// joined to the host netns by a veth pair whose host end is the master.
type segmentPeer struct {
	ns   ns.NetNS
	h    *netlink.Handle
	link netlink.Link
	ip   net.IP
}

// addPeer creates "veth0" in the host netns (the master for the test) and
// its other end "peer0" in a new peer netns with address cidr:
// ip link add veth0 type veth peer name peer0 netns peer.
func (f *netFixture) addPeer(cidr string) (netlink.Link, *segmentPeer) {
	f.t.Helper()
	return f.addPeerAt(f.hostH, cidr)
}

// addPeerAt is addPeer with veth0 in the namespace of h.
func (f *netFixture) addPeerAt(h *netlink.Handle, cidr string) (netlink.Link, *segmentPeer) {
	f.t.Helper()
	pns := testenv.NewNS(f.t)
	p := &segmentPeer{ns: pns, h: testenv.Handle(f.t, pns)}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "veth0"},
		PeerName:      "peer0",
		PeerNamespace: netlink.NsFd(int(pns.Fd())),
	}
	if err := h.LinkAdd(veth); err != nil {
		f.t.Fatalf("ip link add veth0 type veth peer name peer0: %v", err)
	}
	master, err := h.LinkByName("veth0")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := h.LinkSetUp(master); err != nil {
		f.t.Fatal(err)
	}
	if p.link, err = p.h.LinkByName("peer0"); err != nil {
		f.t.Fatal(err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := p.h.AddrAdd(p.link, addr); err != nil {
		f.t.Fatalf("ip addr add %s dev peer0: %v", cidr, err)
	}
	if err := p.h.LinkSetUp(p.link); err != nil {
		f.t.Fatal(err)
	}
	p.ip = addr.IP
	return master, p
}

// familyOf is ip's netlink address family.
func familyOf(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// neighMAC is the peer's neighbour entry for ip, or "" when it has none.
func (p *segmentPeer) neighMAC(t *testing.T, ip net.IP) string {
	t.Helper()
	neighs, err := p.h.NeighList(p.link.Attrs().Index, familyOf(ip))
	if err != nil {
		t.Fatalf("ip neigh show dev peer0: %v", err)
	}
	for _, n := range neighs {
		if n.IP.Equal(ip) {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// addLinkRoute adds dst (CIDR) through link in the netns of h, gateway-less:
// ip route add dst dev link.
func addLinkRoute(t *testing.T, h *netlink.Handle, link netlink.Link, dst string) {
	t.Helper()
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: n, Scope: netlink.SCOPE_LINK}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("ip route add %s dev %s: %v", dst, link.Attrs().Name, err)
	}
}

// loadNFTCounters loads an inet table counting packets to (prerouting, input)
// and from (output, postrouting) ip in netns n, and returns a function
// reading the counters back by chain name.
func loadNFTCounters(t *testing.T, n ns.NetNS, ip string) func() map[string]uint64 {
	t.Helper()
	script := fmt.Sprintf(`table inet ipvlantest {
	chain pre { type filter hook prerouting priority 0; ip daddr %[1]s counter; }
	chain in { type filter hook input priority 0; ip daddr %[1]s counter; }
	chain out { type filter hook output priority 0; ip saddr %[1]s counter; }
	chain post { type filter hook postrouting priority 0; ip saddr %[1]s counter; }
}
`, ip)
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.nft")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runInNS(n, "/usr/sbin/nft", "-f", file); err != nil {
		t.Fatalf("load nftables rules: %v", err)
	}
	return func() map[string]uint64 {
		t.Helper()
		out, err := runInNS(n, "/usr/sbin/nft", "-j", "list", "table", "inet", "ipvlantest")
		if err != nil {
			t.Fatalf("list nftables counters: %v", err)
		}
		var doc struct {
			Nftables []struct {
				Rule *struct {
					Chain string                       `json:"chain"`
					Expr  []map[string]json.RawMessage `json:"expr"`
				} `json:"rule"`
			} `json:"nftables"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("decode nft -j output %q: %v", out, err)
		}
		counts := map[string]uint64{}
		for _, item := range doc.Nftables {
			if item.Rule == nil {
				continue
			}
			for _, e := range item.Rule.Expr {
				raw, ok := e["counter"]
				if !ok {
					continue
				}
				var c struct {
					Packets uint64 `json:"packets"`
				}
				if err := json.Unmarshal(raw, &c); err != nil {
					t.Fatalf("decode counter %s: %v", raw, err)
				}
				counts[item.Rule.Chain] += c.Packets
			}
		}
		return counts
	}
}
