package hostlocal

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want types.DNS
	}{
		{"empty", "", types.DNS{}},
		{"comments and junk skipped", "# x\n; y\nnameserver\nsortlist 10.0.0.0\n", types.DNS{}},
		{
			name: "all fields",
			in:   "nameserver 10.0.0.53\n  nameserver fd00::53 \ndomain a.test\nsearch a.test b.test\noptions ndots:2 edns0\n",
			want: types.DNS{
				Nameservers: []string{"10.0.0.53", "fd00::53"},
				Domain:      "a.test",
				Search:      []string{"a.test", "b.test"},
				Options:     []string{"ndots:2", "edns0"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseResolvConf(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseResolvConf (-want +got):\n%s", diff)
			}
		})
	}
}
