package allocator

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustRange(t testing.TB, subnet, start, end, gw string) Range {
	t.Helper()
	p := netip.MustParsePrefix(subnet)
	r := Range{Subnet: p, RangeStart: FirstHost(p), RangeEnd: DefaultRangeEnd(p), Gateway: FirstHost(p)}
	if start != "" {
		r.RangeStart = netip.MustParseAddr(start)
	}
	if end != "" {
		r.RangeEnd = netip.MustParseAddr(end)
	}
	if gw != "" {
		r.Gateway = netip.MustParseAddr(gw)
	}
	return r
}

func TestCandidates(t *testing.T) {
	tests := []struct {
		name string
		set  func(t *testing.T) RangeSet
		last string
		want []string
	}{
		{
			name: "default /29 skips network, gateway and broadcast",
			set:  func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")} },
			want: []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"},
		},
		{
			name: "round robin from the last reserved address",
			set:  func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")} },
			last: "10.0.0.4",
			want: []string{"10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"},
		},
		{
			name: "last reserved at range end wraps to start",
			set:  func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")} },
			last: "10.0.0.6",
			want: []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"},
		},
		{
			name: "last reserved outside the set is ignored",
			set:  func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")} },
			last: "192.168.0.9",
			want: []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"},
		},
		{
			name: "gateway in the middle is skipped",
			set:  func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "10.0.0.0/29", "", "", "10.0.0.4")} },
			want: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"},
		},
		{
			name: "explicit range with network and broadcast skips them",
			set: func(t *testing.T) RangeSet {
				return RangeSet{mustRange(t, "10.0.0.0/30", "10.0.0.0", "10.0.0.3", "10.0.0.1")}
			},
			want: []string{"10.0.0.2"},
		},
		{
			name: "several ranges continue into the next one and wrap",
			set: func(t *testing.T) RangeSet {
				return RangeSet{
					mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.12", ""),
					mustRange(t, "10.0.1.0/24", "10.0.1.10", "10.0.1.11", ""),
				}
			},
			last: "10.0.0.11",
			want: []string{"10.0.0.12", "10.0.1.10", "10.0.1.11", "10.0.0.10", "10.0.0.11"},
		},
		{
			name: "last at the end of the last range starts over at the first",
			set: func(t *testing.T) RangeSet {
				return RangeSet{
					mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.11", ""),
					mustRange(t, "10.0.1.0/24", "10.0.1.10", "10.0.1.11", ""),
				}
			},
			last: "10.0.1.11",
			want: []string{"10.0.0.10", "10.0.0.11", "10.0.1.10", "10.0.1.11"},
		},
		{
			name: "IPv6 keeps the last address",
			set:  func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "fd00::/126", "", "", "")} },
			want: []string{"fd00::2", "fd00::3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last netip.Addr
			if tt.last != "" {
				last = netip.MustParseAddr(tt.last)
			}
			var got []string
			for _, a := range tt.set(t).Candidates(last) {
				got = append(got, a.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Candidates(%q) mismatch (-want +got):\n%s", tt.last, diff)
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	tests := []struct {
		name string
		set  RangeSet
		want int64
	}{
		{"/24 default", RangeSet{mustRange(t, "10.0.0.0/24", "", "", "")}, 253},
		{"/30 default", RangeSet{mustRange(t, "10.0.0.0/30", "", "", "")}, 1},
		{"gateway outside range", RangeSet{mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.19", "")}, 10},
		{"gateway is network address", RangeSet{mustRange(t, "10.0.0.0/30", "10.0.0.0", "10.0.0.3", "10.0.0.0")}, 2},
		{"two ranges", RangeSet{
			mustRange(t, "10.0.0.0/29", "", "", ""),
			mustRange(t, "10.0.1.0/29", "", "", ""),
		}, 10},
		{"IPv6 /120", RangeSet{mustRange(t, "fd00::/120", "", "", "")}, 254},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.set.Capacity().Int64(); got != tt.want {
				t.Errorf("Capacity() = %d, want %d", got, tt.want)
			}
			n := int64(0)
			for range tt.set.Candidates(netip.Addr{}) {
				n++
			}
			if n != tt.want {
				t.Errorf("Candidates yields %d addresses, Capacity says %d", n, tt.want)
			}
		})
	}
}

func TestReasonAndOverlaps(t *testing.T) {
	r := mustRange(t, "10.0.0.0/24", "10.0.0.0", "10.0.0.255", "10.0.0.1")
	reasons := map[string]string{
		"10.0.0.0":   "the network address",
		"10.0.0.1":   "the gateway",
		"10.0.0.255": "the broadcast address",
		"10.0.0.7":   "",
		"10.0.1.7":   "outside the range",
		"fd00::7":    "outside the range",
	}
	for a, want := range reasons {
		if got := r.Reason(netip.MustParseAddr(a)); got != want {
			t.Errorf("Reason(%s) = %q, want %q", a, got, want)
		}
	}
	overlaps := []struct {
		a, b Range
		want bool
	}{
		{mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.20", ""), mustRange(t, "10.0.0.0/24", "10.0.0.20", "10.0.0.30", ""), true},
		{mustRange(t, "10.0.0.0/24", "10.0.0.10", "10.0.0.20", ""), mustRange(t, "10.0.0.0/24", "10.0.0.21", "10.0.0.30", ""), false},
		{mustRange(t, "10.0.0.0/16", "", "", ""), mustRange(t, "10.0.5.0/24", "", "", ""), true},
		{mustRange(t, "10.0.0.0/24", "", "", ""), mustRange(t, "fd00::/120", "", "", ""), false},
	}
	for _, tt := range overlaps {
		if got := tt.a.Overlaps(tt.b); got != tt.want {
			t.Errorf("%s overlaps %s = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Overlaps(tt.a); got != tt.want {
			t.Errorf("%s overlaps %s = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}
