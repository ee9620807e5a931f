package hostlocal

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

var addrCmp = cmp.Comparer(func(x, y netip.Addr) bool { return x == y })
var prefixCmp = cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })

// conf wraps an ipam object (and optional top-level fields) into a network
// config.
func conf(ipam string, extra ...string) string {
	top := ""
	for _, e := range extra {
		top += e + ","
	}
	return `{"cniVersion":"1.1.0","name":"net1","type":"ipvlan",` + top + `"ipam":` + ipam + `}`
}

func rng(subnet, start, end, gw string) allocator.Range {
	return allocator.Range{
		Subnet:     netip.MustParsePrefix(subnet),
		RangeStart: netip.MustParseAddr(start),
		RangeEnd:   netip.MustParseAddr(end),
		Gateway:    netip.MustParseAddr(gw),
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		stdin   string
		envArgs string
		want    *Config
	}{
		{
			name:  "single subnet with defaults",
			stdin: conf(`{"type":"host-local","subnet":"10.1.0.0/24"}`),
			want: &Config{
				CNIVersion: "1.1.0", Name: "net1", DataDir: "/var/lib/cni/networks",
				RangeSets: []allocator.RangeSet{{rng("10.1.0.0/24", "10.1.0.1", "10.1.0.254", "10.1.0.1")}},
			},
		},
		{
			name: "ranges, legacy range and runtime ranges in reference order",
			stdin: conf(`{"subnet":"10.2.0.0/24","rangeStart":"10.2.0.10","rangeEnd":"10.2.0.20","gateway":"10.2.0.254",
				"ranges":[[{"subnet":"10.3.0.0/24"},{"subnet":"10.4.0.0/24"}],[{"subnet":"fd00::/64"}]],
				"dataDir":"/run/ipam","resolvConf":"/etc/resolv.conf","routes":[{"dst":"0.0.0.0/0"}]}`,
				`"runtimeConfig":{"ipRanges":[[{"subnet":"10.9.0.0/30"}]]}`),
			want: &Config{
				CNIVersion: "1.1.0", Name: "net1", DataDir: "/run/ipam", ResolvConf: "/etc/resolv.conf",
				Routes: []*types.Route{{Dst: *mustCIDR(t, "0.0.0.0/0")}},
				RangeSets: []allocator.RangeSet{
					{rng("10.9.0.0/30", "10.9.0.1", "10.9.0.2", "10.9.0.1")},
					{rng("10.2.0.0/24", "10.2.0.10", "10.2.0.20", "10.2.0.254")},
					{rng("10.3.0.0/24", "10.3.0.1", "10.3.0.254", "10.3.0.1"), rng("10.4.0.0/24", "10.4.0.1", "10.4.0.254", "10.4.0.1")},
					{rng("fd00::/64", "fd00::1", "fd00::ffff:ffff:ffff:ffff", "fd00::1")},
				},
			},
		},
		{
			name: "requested addresses from all sources, duplicates removed",
			stdin: conf(`{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00::/120"}]]}`,
				`"args":{"cni":{"ips":["fd00::7/120"]}}`, `"runtimeConfig":{"ips":["10.1.0.5"]}`),
			envArgs: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.5",
			want: &Config{
				CNIVersion: "1.1.0", Name: "net1", DataDir: "/var/lib/cni/networks",
				RangeSets: []allocator.RangeSet{
					{rng("10.1.0.0/24", "10.1.0.1", "10.1.0.254", "10.1.0.1")},
					{rng("fd00::/120", "fd00::1", "fd00::ff", "fd00::1")},
				},
				Requests: []Request{
					{Field: "CNI_ARGS IP", Addr: netip.MustParseAddr("10.1.0.5")},
					{Field: "args.cni.ips[0]", Addr: netip.MustParseAddr("fd00::7")},
				},
			},
		},
		{
			name:  "GC attachments",
			stdin: conf(`{"subnet":"10.1.0.0/24"}`, `"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]`),
			want: &Config{
				CNIVersion: "1.1.0", Name: "net1", DataDir: "/var/lib/cni/networks",
				RangeSets:           []allocator.RangeSet{{rng("10.1.0.0/24", "10.1.0.1", "10.1.0.254", "10.1.0.1")}},
				ValidAttachments:    []store.Attachment{{ContainerID: "c1", IfName: "eth0"}},
				HasValidAttachments: true,
			},
		},
		{
			name:  "GC with null attachments means none is valid",
			stdin: conf(`{"subnet":"10.1.0.0/24"}`, `"cni.dev/valid-attachments":null`),
			want: &Config{
				CNIVersion: "1.1.0", Name: "net1", DataDir: "/var/lib/cni/networks",
				RangeSets:           []allocator.RangeSet{{rng("10.1.0.0/24", "10.1.0.1", "10.1.0.254", "10.1.0.1")}},
				HasValidAttachments: true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.stdin), tt.envArgs)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			got.rangeFields = nil
			if diff := cmp.Diff(tt.want, got, addrCmp, prefixCmp, cmp.AllowUnexported(Config{})); diff != "" {
				t.Errorf("ParseConfig (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	v4 := `{"subnet":"10.1.0.0/24"}`
	tests := []struct {
		name    string
		stdin   string
		envArgs string
		code    uint
		msg     string
	}{
		{"not JSON", `{`, "", 6, "decode network config: unexpected end of JSON input"},
		{"wrong type", conf(`{"subnet":24}`), "", 6,
			"decode network config: json: cannot unmarshal number into Go struct field ipamConf.ipam.rangeConf.subnet of type string"},
		{"no name", `{"ipam":{}}`, "", 7, `name "" is not a valid network name`},
		{"bad name", `{"name":"../x","ipam":{}}`, "", 7, `name "../x" is not a valid network name`},
		{"no ipam", `{"name":"n"}`, "", 7, `ipam is missing from network "n"`},
		{"no ranges", conf(`{"type":"host-local"}`), "", 7, `ipam of network "net1" has no ranges: set ipam.subnet or ipam.ranges`},
		{"rangeStart without subnet", conf(`{"rangeStart":"10.0.0.5"}`), "", 7, `ipam.rangeStart "10.0.0.5" is set without ipam.subnet`},
		{"empty range set", conf(`{"ranges":[[]]}`), "", 7, "ipam.ranges[0] is an empty range set"},
		{"subnet missing in range", conf(`{"ranges":[[{"rangeStart":"10.0.0.5"}]]}`), "", 7, "ipam.ranges[0][0].subnet is missing"},
		{"subnet not CIDR", conf(`{"subnet":"10.1.0.0"}`), "", 7, `ipam.subnet "10.1.0.0" is not a CIDR prefix`},
		{"host bits set", conf(`{"subnet":"10.1.0.5/24"}`), "", 7,
			`ipam.subnet "10.1.0.5/24" has host bits set: the network address is 10.1.0.0/24`},
		{"network too small v4", conf(`{"ranges":[[{"subnet":"10.1.0.0/31"}]]}`), "", 7,
			`ipam.ranges[0][0].subnet "10.1.0.0/31" is too small to allocate from: at most /30`},
		{"network too small v6", conf(`{"subnet":"fd00::/127"}`), "", 7,
			`ipam.subnet "fd00::/127" is too small to allocate from: at most /126`},
		{"mapped subnet", conf(`{"subnet":"::ffff:10.0.0.0/120"}`), "", 7,
			`ipam.subnet "::ffff:10.0.0.0/120" is an IPv4-mapped IPv6 prefix: write it as IPv4`},
		{"rangeStart not IP", conf(`{"subnet":"10.1.0.0/24","rangeStart":"ten"}`), "", 7, `ipam.rangeStart "ten" is not an IP address`},
		{"rangeStart outside subnet", conf(`{"subnet":"10.1.0.0/24","rangeStart":"10.2.0.1"}`), "", 7,
			`ipam.rangeStart "10.2.0.1" is outside subnet "10.1.0.0/24"`},
		{"rangeEnd outside subnet", conf(`{"ranges":[[{"subnet":"10.1.0.0/24","rangeEnd":"10.1.1.0"}]]}`), "", 7,
			`ipam.ranges[0][0].rangeEnd "10.1.1.0" is outside subnet "10.1.0.0/24"`},
		{"rangeEnd other family", conf(`{"subnet":"10.1.0.0/24","rangeEnd":"fd00::1"}`), "", 7,
			`ipam.rangeEnd "fd00::1" is outside subnet "10.1.0.0/24"`},
		{"start after end", conf(`{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.9","rangeEnd":"10.1.0.8"}`), "", 7,
			"ipam.rangeStart 10.1.0.9 is after ipam.rangeEnd 10.1.0.8"},
		{"gateway other family", conf(`{"subnet":"10.1.0.0/24","gateway":"fd00::1"}`), "", 7,
			`ipam.gateway "fd00::1" is not of the address family of subnet "10.1.0.0/24"`},
		{"gateway not IP", conf(`{"subnet":"10.1.0.0/24","gateway":"x"}`), "", 7, `ipam.gateway "x" is not an IP address`},
		{"mixed families in a set", conf(`{"ranges":[[{"subnet":"10.1.0.0/24"},{"subnet":"fd00::/64"}]]}`), "", 7,
			`ipam.ranges[0][1].subnet "fd00::/64" is not of the address family of ipam.ranges[0][0].subnet "10.1.0.0/24"`},
		{"overlap within a set", conf(`{"ranges":[[{"subnet":"10.1.0.0/24"},{"subnet":"10.1.0.0/25"}]]}`), "", 7,
			"ipam.ranges[0][1] (10.1.0.1-10.1.0.126) overlaps ipam.ranges[0][0] (10.1.0.1-10.1.0.254)"},
		{"overlap across sets", conf(`{"subnet":"10.1.0.0/16","ranges":[[{"subnet":"10.1.5.0/24"}]]}`), "", 7,
			"ipam.ranges[0][0] (10.1.5.1-10.1.5.254) overlaps ipam (10.1.0.1-10.1.255.254)"},
		{"runtime range overlaps", conf(v4, `"runtimeConfig":{"ipRanges":[[{"subnet":"10.1.0.0/24"}]]}`), "", 7,
			"ipam (10.1.0.1-10.1.0.254) overlaps runtimeConfig.ipRanges[0][0] (10.1.0.1-10.1.0.254)"},
		{"route without dst", conf(`{"subnet":"10.1.0.0/24","routes":[{"gw":"10.1.0.1"}]}`), "", 7,
			`ipam.routes[0] {"gw":"10.1.0.1"} has no dst`},
		{"bad route", conf(`{"subnet":"10.1.0.0/24","routes":[{"dst":"x"}]}`), "", 7,
			`ipam.routes[0] {"dst":"x"} is not a route: invalid CIDR address: x`},
		{"bad CNI_ARGS pair", conf(v4), "IP", 4, `CNI_ARGS pair "IP" is not KEY=VALUE`},
		{"bad CNI_ARGS IP", conf(v4), "IP=10.1.0.300", 4, `CNI_ARGS IP "10.1.0.300" is not an IP address`},
		{"bad args ip", conf(v4, `"args":{"cni":{"ips":["nope"]}}`), "", 7, `args.cni.ips[0] "nope" is not an IP address`},
		{"bad runtime ip", conf(v4, `"runtimeConfig":{"ips":["10.1.0.2","1.2.3"]}`), "", 7, `runtimeConfig.ips[1] "1.2.3" is not an IP address`},
		{"bad attachments", conf(v4, `"cni.dev/valid-attachments":{"a":1}`), "", 7,
			`cni.dev/valid-attachments {"a":1} is not a list of attachments: json: cannot unmarshal object into Go value of type []types.GCAttachment`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.stdin), tt.envArgs)
			checkCNIError(t, err, tt.code, tt.msg)
		})
	}
}

func checkCNIError(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *types.Error code %d", err, err, code)
	}
	if diff := cmp.Diff(types.Error{Code: code, Msg: msg}, *e); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestRequestedBySet(t *testing.T) {
	ranges := `{"ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.0","rangeEnd":"10.1.0.255"}],[{"subnet":"fd00::/120"}]]}`
	tests := []struct {
		name    string
		stdin   string
		envArgs string
		want    map[int]netip.Addr
		msg     string
	}{
		{"none", conf(ranges), "", map[int]netip.Addr{}, ""},
		{"one per set", conf(ranges, `"runtimeConfig":{"ips":["fd00::9"]}`), "IP=10.1.0.9",
			map[int]netip.Addr{0: netip.MustParseAddr("10.1.0.9"), 1: netip.MustParseAddr("fd00::9")}, ""},
		{"outside", conf(ranges, `"runtimeConfig":{"ips":["10.2.0.9"]}`), "", nil,
			`runtimeConfig.ips[0] "10.2.0.9" is outside every range`},
		{"gateway", conf(ranges), "IP=10.1.0.1", nil, `CNI_ARGS IP "10.1.0.1" is the gateway of ipam.ranges[0][0]`},
		{"network address", conf(ranges, `"args":{"cni":{"ips":["10.1.0.0"]}}`), "", nil,
			`args.cni.ips[0] "10.1.0.0" is the network address of ipam.ranges[0][0]`},
		{"broadcast address", conf(ranges), "IP=10.1.0.255", nil,
			`CNI_ARGS IP "10.1.0.255" is the broadcast address of ipam.ranges[0][0]`},
		{"two in one set", conf(ranges, `"runtimeConfig":{"ips":["10.1.0.8"]}`), "IP=10.1.0.9", nil,
			`CNI_ARGS IP "10.1.0.9" and runtimeConfig.ips[0] "10.1.0.8" both request range set 0: one address per range set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.stdin), tt.envArgs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.RequestedBySet()
			if tt.msg != "" {
				checkCNIError(t, err, 7, tt.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, addrCmp); diff != "" {
				t.Errorf("RequestedBySet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrevResultAddrs(t *testing.T) {
	stdin := conf(`{"subnet":"10.1.0.0/24"}`,
		`"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.5/24"},{"address":"fd00::5/64"}]}`)
	got, ok, err := prevResultAddrs([]byte(stdin))
	if err != nil || !ok {
		t.Fatalf("prevResultAddrs = %v, %v, %v", got, ok, err)
	}
	want := []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00::5")}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("prevResultAddrs (-want +got):\n%s", diff)
	}
	if _, ok, err := prevResultAddrs([]byte(conf(`{}`))); ok || err != nil {
		t.Errorf("without prevResult: ok=%v err=%v", ok, err)
	}
	_, _, err = prevResultAddrs([]byte(conf(`{}`, `"prevResult":{"ips":[{"address":"bad"}]}`)))
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 6 || !strings.HasPrefix(e.Msg, "prevResult: ") {
		t.Errorf("bad prevResult error = %v, want code 6", err)
	}
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	n, err := types.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
