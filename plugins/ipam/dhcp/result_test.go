package main

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/client"
)

func TestResult(t *testing.T) {
	tests := []struct {
		name  string
		lease client.Lease
		want  string
	}{
		{"router becomes the default route", client.Lease{
			Address: netip.MustParsePrefix("192.0.2.80/24"), Router: netip.MustParseAddr("192.0.2.1"),
			DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}, Domain: "example.test",
		}, `{"cniVersion":"1.1.0","ips":[{"address":"192.0.2.80/24","gateway":"192.0.2.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"192.0.2.1"}],"dns":{"nameservers":["192.0.2.53"],"domain":"example.test"}}`},
		{"classless routes replace it (RFC 3442)", client.Lease{
			Address: netip.MustParsePrefix("192.0.2.80/24"), Router: netip.MustParseAddr("192.0.2.1"),
			Routes: []client.Route{
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), Via: netip.MustParseAddr("192.0.2.2")},
				{Dst: netip.MustParsePrefix("192.0.2.0/24"), Via: netip.MustParseAddr("0.0.0.0")},
			},
		}, `{"cniVersion":"1.1.0","ips":[{"address":"192.0.2.80/24","gateway":"192.0.2.1"}],"routes":[{"dst":"198.51.100.0/24","gw":"192.0.2.2"},{"dst":"192.0.2.0/24"}]}`},
		{"no router", client.Lease{Address: netip.MustParsePrefix("192.0.2.80/24")},
			`{"cniVersion":"1.1.0","ips":[{"address":"192.0.2.80/24"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Result(&tt.lease)
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("result (-want +got):\n%s", d)
			}
		})
	}
}
