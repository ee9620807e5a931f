package resultjson

import (
	"bytes"
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func cidr(t *testing.T, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return *n
}

// TestEncodeAsCNI: for results using every field, and every spec
// version, Encode writes exactly what cni's GetAsVersion and PrintTo do.
func TestEncodeAsCNI(t *testing.T) {
	one, two := 1, 254
	results := map[string]*current.Result{
		"empty": {CNIVersion: "1.1.0"},
		"ipvlan's": {
			CNIVersion: "1.1.0",
			Interfaces: []*current.Interface{{Name: "eth0", Mac: "02:42:ac:11:00:02", Sandbox: "/var/run/netns/cni-1234"}},
			IPs:        []*current.IPConfig{{Address: cidr(t, "10.1.0.5/16"), Gateway: net.ParseIP("10.1.0.1"), Interface: current.Int(0)}},
			Routes:     []*types.Route{{Dst: cidr(t, "0.0.0.0/0")}},
		},
		"every field": {
			CNIVersion: "1.1.0",
			Interfaces: []*current.Interface{
				{Name: "host-side", Mac: "aa:bb:cc:dd:ee:ff", Mtu: 9000, Sandbox: "", SocketPath: "/run/x.sock", PciID: "0000:00:1f.6"},
				{Name: ""},
			},
			IPs: []*current.IPConfig{
				{Address: cidr(t, "fd00::5/64"), Gateway: net.ParseIP("fd00::1"), Interface: current.Int(1)},
				{Address: cidr(t, "192.0.2.9/24")},
				{Address: net.IPNet{}},
			},
			Routes: []*types.Route{
				{Dst: cidr(t, "198.51.100.0/24"), GW: net.ParseIP("192.0.2.1"), MTU: 1400, AdvMSS: 1360, Priority: 100, Table: &two, Scope: &one},
				{Dst: cidr(t, "::/0"), GW: net.ParseIP("fd00::1"), Table: new(int), Scope: new(int)},
			},
			DNS: types.DNS{Nameservers: []string{"192.0.2.53", "fd00::53"}, Domain: "example.test", Search: []string{"a.test", "b.test"}, Options: []string{"ndots:2", "rotate"}},
		},
		"strings to escape": {
			CNIVersion: "1.0.0",
			Interfaces: []*current.Interface{{Name: "a<b>&\"c\\", Mac: "\u2028\u2029\t\x01", Sandbox: "bad \xff\xfe utf-8 \xe2\x82"}},
			DNS:        types.DNS{Domain: "x", Search: []string{}},
		},
		"dns only": {CNIVersion: "1.1.0", DNS: types.DNS{Options: []string{"edns0"}}},
		// cni's conversion to 0.x fails on nil entries; 1.x writes null.
		"nil entries": {CNIVersion: "1.1.0", Interfaces: []*current.Interface{nil}, IPs: []*current.IPConfig{nil}, Routes: []*types.Route{nil}},
	}
	for name, r := range results {
		versions := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
		if name == "nil entries" {
			versions = versions[3:]
		}
		for _, v := range versions {
			want, err := r.GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			wantErr := want.PrintTo(&buf)
			got, err := Encode(r, v)
			if (err != nil) != (wantErr != nil) {
				t.Errorf("%s, %s: error %v, cni's %v", name, v, err, wantErr)
				continue
			}
			if !bytes.Equal(got, buf.Bytes()) {
				t.Errorf("%s, %s:\n got %s\nwant %s", name, v, got, buf.Bytes())
			}
		}
	}
	if _, err := Encode(results["empty"], "9.9.9"); err == nil {
		t.Errorf("Encode to version 9.9.9: no error")
	}
}
