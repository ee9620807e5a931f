package clusteripam

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func hostname(name string) func() (string, error) {
	return func() (string, error) { return name, nil }
}

func TestParseConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, ipam string
		host       func() (string, error)
		wantBits   []int
		wantNode   string
		wantPrefix string
		wantDial   time.Duration
	}{
		{"defaults", `"subnet":"10.0.0.0/16","etcd":{"endpoints":["http://127.0.0.1:2379"]}`, hostname("worker-1"),
			[]int{26}, "worker-1", "/cluster-ipam/", 5 * time.Second},
		{"dual stack", `"ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"fd00::/64"}]],"etcd":{"endpoints":["http://e:2379"],"prefix":"/x","dialTimeout":1.5},"node":"n1"`,
			hostname("ignored"), []int{26, 122}, "n1", "/x/", 1500 * time.Millisecond},
		{"IPv6 blockSize", `"ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"fd00::/64"}]],"blockSize":120,"etcd":{"endpoints":["http://e:2379"]},"node":"n1"`,
			hostname("ignored"), []int{24, 120}, "n1", "/cluster-ipam/", 5 * time.Second},
		{"IPv4 blockSize", `"ranges":[[{"subnet":"fd00::/64"}]],"blockSize":28,"etcd":{"endpoints":["http://e:2379"]},"node":"n1"`,
			hostname("ignored"), []int{124}, "n1", "/cluster-ipam/", 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"net","ipam":{"type":"cluster-ipam",`+tc.ipam+`}}`), "", tc.host)
			if err != nil {
				t.Fatal(err)
			}
			got := []any{c.BlockBits, c.Node, c.Etcd.Prefix, c.Etcd.DialTimeout}
			want := []any{tc.wantBits, tc.wantNode, tc.wantPrefix, tc.wantDial}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConfigHostname(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.1.0","name":"net","ipam":{"type":"cluster-ipam","subnet":"10.0.0.0/24","etcd":{"endpoints":["http://e:2379"]}}}`)
	if _, err := ParseConfig(conf, "", func() (string, error) { return "", errors.New("no uts") }); err == nil {
		t.Error("an unknown host name and no ipam.node: no error")
	}
	if _, err := ParseConfig(conf, "", hostname("bad/name")); err == nil {
		t.Error("host name bad/name and no ipam.node: no error")
	}
}
