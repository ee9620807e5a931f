package hostlocal

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store/disk"
)

// Config is a validated host-local configuration.
type Config struct {
	CNIVersion string
	Name       string // network name; names the lease directory
	DataDir    string
	ResolvConf string
	Routes     []*types.Route
	// RangeSets in allocation order: runtimeConfig.ipRanges, then the
	// single range of ipam.subnet, then ipam.ranges, as in the reference.
	RangeSets []allocator.RangeSet
	// Requests are the addresses asked for through CNI_ARGS IP=,
	// args.cni.ips and runtimeConfig.ips, duplicates removed.
	Requests []Request
	// ValidAttachments is the GC list of cni.dev/valid-attachments;
	// HasValidAttachments is false when the key is absent.
	ValidAttachments    []store.Attachment
	HasValidAttachments bool

	rangeFields [][]string // config field of every range, as RangeSets
}

// Request is a requested address and the field that asked for it.
type Request struct {
	Field string
	Addr  netip.Addr
}

type rangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart"`
	RangeEnd   string `json:"rangeEnd"`
	Gateway    string `json:"gateway"`
}

type ipamConf struct {
	rangeConf
	Type       string            `json:"type"`
	Ranges     [][]rangeConf     `json:"ranges"`
	Routes     []json.RawMessage `json:"routes"`
	DataDir    string            `json:"dataDir"`
	ResolvConf string            `json:"resolvConf"`
}

type netConf struct {
	CNIVersion    string    `json:"cniVersion"`
	Name          string    `json:"name"`
	IPAM          *ipamConf `json:"ipam"`
	RuntimeConfig struct {
		IPRanges [][]rangeConf `json:"ipRanges"`
		IPs      []string      `json:"ips"`
	} `json:"runtimeConfig"`
	Args struct {
		CNI struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
	// Raw, so that an explicit null (no valid attachment) differs from
	// an absent key.
	ValidAttachments json.RawMessage `json:"cni.dev/valid-attachments"`
	// The name an early CNI 1.1 spec draft used; libcni sends both.
	Attachments json.RawMessage `json:"cni.dev/attachments"`
}

func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// ParseConfig parses and validates the network config a runtime passes on
// stdin and the CNI_ARGS value. Its errors are *types.Error: code 6 when the
// JSON does not decode, 4 for a bad CNI_ARGS, 7 for an invalid config.
// Requested addresses are parsed but only checked against the ranges by
// RequestedBySet, so that DEL works whatever was requested.
func ParseConfig(stdin []byte, envArgs string) (*Config, error) {
	var n netConf
	if err := json.Unmarshal(stdin, &n); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network config: %v", err), "")
	}
	// The specification's name syntax, ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$
	// (checked before the verb by pluginmain too, for the binary).
	if !pluginmain.ValidName(n.Name) {
		return nil, invalid("name %q is not a valid network name", n.Name)
	}
	if n.IPAM == nil {
		return nil, invalid("ipam is missing from network %q", n.Name)
	}
	c := &Config{
		CNIVersion: n.CNIVersion,
		Name:       n.Name,
		DataDir:    n.IPAM.DataDir,
		ResolvConf: n.IPAM.ResolvConf,
	}
	if c.DataDir == "" {
		c.DataDir = disk.DefaultDataDir
	}
	if err := c.parseRanges(&n); err != nil {
		return nil, err
	}
	if err := c.parseRoutes(n.IPAM.Routes); err != nil {
		return nil, err
	}
	if err := c.parseRequests(&n, envArgs); err != nil {
		return nil, err
	}
	if err := c.parseAttachments(&n); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) parseRanges(n *netConf) *types.Error {
	type setConf struct {
		field  string
		ranges []rangeConf
	}
	var sets []setConf
	for i, s := range n.RuntimeConfig.IPRanges {
		sets = append(sets, setConf{fmt.Sprintf("runtimeConfig.ipRanges[%d]", i), s})
	}
	legacy := n.IPAM.rangeConf
	if legacy.Subnet != "" {
		sets = append(sets, setConf{"ipam", []rangeConf{legacy}})
	} else {
		for _, f := range []struct{ name, v string }{
			{"rangeStart", legacy.RangeStart}, {"rangeEnd", legacy.RangeEnd}, {"gateway", legacy.Gateway},
		} {
			if f.v != "" {
				return invalid("ipam.%s %q is set without ipam.subnet", f.name, f.v)
			}
		}
	}
	for i, s := range n.IPAM.Ranges {
		sets = append(sets, setConf{fmt.Sprintf("ipam.ranges[%d]", i), s})
	}
	if len(sets) == 0 {
		return invalid("ipam of network %q has no ranges: set ipam.subnet or ipam.ranges", n.Name)
	}
	for _, sc := range sets {
		if len(sc.ranges) == 0 {
			return invalid("%s is an empty range set", sc.field)
		}
		var set allocator.RangeSet
		var fields []string
		for j, rc := range sc.ranges {
			field := sc.field
			if field != "ipam" {
				field = fmt.Sprintf("%s[%d]", sc.field, j)
			}
			r, err := parseRange(field, rc)
			if err != nil {
				return err
			}
			if len(set) > 0 && r.Subnet.Addr().Is4() != set[0].Subnet.Addr().Is4() {
				return invalid("%s.subnet %q is not of the address family of %s.subnet %q", field, rc.Subnet, fields[0], set[0].Subnet)
			}
			set = append(set, r)
			fields = append(fields, field)
		}
		c.RangeSets = append(c.RangeSets, set)
		c.rangeFields = append(c.rangeFields, fields)
	}
	// Ranges overlap within a set or across sets alike.
	for i, s := range c.RangeSets {
		for j, r := range s {
			for k := 0; k <= i; k++ {
				for l, o := range c.RangeSets[k] {
					if k == i && l >= j {
						break
					}
					if r.Overlaps(o) {
						return invalid("%s (%s) overlaps %s (%s)", c.rangeFields[i][j], r, c.rangeFields[k][l], o)
					}
				}
			}
		}
	}
	return nil
}

// parseAddr parses a plain IP address, IPv4-mapped IPv6 becoming IPv4.
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func parseRange(field string, rc rangeConf) (allocator.Range, *types.Error) {
	var r allocator.Range
	if rc.Subnet == "" {
		return r, invalid("%s.subnet is missing", field)
	}
	p, err := netip.ParsePrefix(rc.Subnet)
	if err != nil {
		return r, invalid("%s.subnet %q is not a CIDR prefix", field, rc.Subnet)
	}
	if p.Addr().Is4In6() {
		return r, invalid("%s.subnet %q is an IPv4-mapped IPv6 prefix: write it as IPv4", field, rc.Subnet)
	}
	if p != p.Masked() {
		return r, invalid("%s.subnet %q has host bits set: the network address is %s", field, rc.Subnet, p.Masked())
	}
	if p.Bits() > p.Addr().BitLen()-2 {
		return r, invalid("%s.subnet %q is too small to allocate from: at most /%d", field, rc.Subnet, p.Addr().BitLen()-2)
	}
	r.Subnet = p
	addr := func(name, v string, def netip.Addr) (netip.Addr, *types.Error) {
		if v == "" {
			return def, nil
		}
		a, ok := parseAddr(v)
		if !ok {
			return a, invalid("%s.%s %q is not an IP address", field, name, v)
		}
		if name != "gateway" && !p.Contains(a) {
			return a, invalid("%s.%s %q is outside subnet %q", field, name, v, rc.Subnet)
		}
		if a.Is4() != p.Addr().Is4() {
			return a, invalid("%s.%s %q is not of the address family of subnet %q", field, name, v, rc.Subnet)
		}
		return a, nil
	}
	var terr *types.Error
	if r.RangeStart, terr = addr("rangeStart", rc.RangeStart, allocator.FirstHost(p)); terr != nil {
		return r, terr
	}
	if r.RangeEnd, terr = addr("rangeEnd", rc.RangeEnd, allocator.DefaultRangeEnd(p)); terr != nil {
		return r, terr
	}
	if r.Gateway, terr = addr("gateway", rc.Gateway, allocator.FirstHost(p)); terr != nil {
		return r, terr
	}
	if r.RangeStart.Compare(r.RangeEnd) > 0 {
		return r, invalid("%s.rangeStart %s is after %s.rangeEnd %s", field, r.RangeStart, field, r.RangeEnd)
	}
	return r, nil
}

func (c *Config) parseRoutes(raw []json.RawMessage) *types.Error {
	for i, m := range raw {
		field := fmt.Sprintf("ipam.routes[%d]", i)
		var r types.Route
		if err := json.Unmarshal(m, &r); err != nil {
			return invalid("%s %s is not a route: %v", field, m, err)
		}
		if r.Dst.IP == nil {
			return invalid("%s %s has no dst", field, m)
		}
		c.Routes = append(c.Routes, &r)
	}
	return nil
}

// parseRequestAddr parses a requested address; like the reference, a CIDR
// suffix is accepted and ignored.
func parseRequestAddr(v string) (netip.Addr, bool) {
	if a, ok := parseAddr(v); ok {
		return a, true
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr().Unmap(), true
}

func (c *Config) parseRequests(n *netConf, envArgs string) *types.Error {
	seen := map[netip.Addr]bool{}
	add := func(field string, a netip.Addr) {
		if !seen[a] {
			seen[a] = true
			c.Requests = append(c.Requests, Request{Field: field, Addr: a})
		}
	}
	if envArgs != "" {
		for _, pair := range strings.Split(envArgs, ";") {
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS pair %q is not KEY=VALUE", pair), "")
			}
			if k != "IP" {
				continue
			}
			a, ok := parseRequestAddr(v)
			if !ok {
				return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS IP %q is not an IP address", v), "")
			}
			add("CNI_ARGS IP", a)
		}
	}
	for _, src := range []struct {
		field string
		ips   []string
	}{{"args.cni.ips", n.Args.CNI.IPs}, {"runtimeConfig.ips", n.RuntimeConfig.IPs}} {
		for i, v := range src.ips {
			field := fmt.Sprintf("%s[%d]", src.field, i)
			a, ok := parseRequestAddr(v)
			if !ok {
				return invalid("%s %q is not an IP address", field, v)
			}
			add(field, a)
		}
	}
	return nil
}

func (c *Config) parseAttachments(n *netConf) *types.Error {
	raw, field := n.ValidAttachments, "cni.dev/valid-attachments"
	if raw == nil {
		raw, field = n.Attachments, "cni.dev/attachments"
	}
	if raw == nil {
		return nil
	}
	var list []types.GCAttachment
	if err := json.Unmarshal(raw, &list); err != nil {
		return invalid("%s %s is not a list of attachments: %v", field, raw, err)
	}
	c.HasValidAttachments = true
	for _, a := range list {
		c.ValidAttachments = append(c.ValidAttachments, store.NewAttachment(a.ContainerID, a.IfName))
	}
	return nil
}

// RequestedBySet maps every requested address to the index of the range set
// it belongs to. An address outside every range, a gateway, an IPv4 network
// or broadcast address, or two addresses for one range set is an invalid
// config (code 7).
func (c *Config) RequestedBySet() (map[int]netip.Addr, error) {
	out := map[int]netip.Addr{}
	by := map[int]string{}
	for _, req := range c.Requests {
		set := -1
		for i, s := range c.RangeSets {
			for j, r := range s {
				if !r.Contains(req.Addr) {
					continue
				}
				if reason := r.Reason(req.Addr); reason != "" {
					return nil, invalid("%s %q is %s of %s", req.Field, req.Addr, reason, c.rangeFields[i][j])
				}
				set = i
			}
		}
		if set < 0 {
			return nil, invalid("%s %q is outside every range", req.Field, req.Addr)
		}
		if prev, ok := out[set]; ok {
			return nil, invalid("%s %q and %s %q both request range set %d: one address per range set", by[set], prev, req.Field, req.Addr, set)
		}
		out[set], by[set] = req.Addr, req.Field
	}
	return out, nil
}

// prevResultAddrs returns the addresses of the prevResult in a CHECK
// config, and false when there is none. A prevResult that does not decode
// is code 6.
func prevResultAddrs(stdin []byte) ([]netip.Addr, bool, error) {
	var pc types.PluginConf
	if err := json.Unmarshal(stdin, &pc); err != nil {
		return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network config: %v", err), "")
	}
	if pc.RawPrevResult == nil {
		return nil, false, nil
	}
	if err := version.ParsePrevResult(&pc); err != nil {
		return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	res, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	var out []netip.Addr
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return nil, false, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult address %q is not an IP address", ipc.Address.String()), "")
		}
		out = append(out, a.Unmap())
	}
	return out, true, nil
}
