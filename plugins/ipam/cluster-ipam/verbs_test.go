package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
)

// withKeys returns conf with top-level keys set.
func withKeys(t *testing.T, conf string, kv map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(conf), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestVerbs: dual stack, a retried ADD, requested addresses, CHECK, DEL
// of an unknown attachment and GC without its list, against real etcd.
func TestVerbs(t *testing.T) {
	c := startCluster(t, nil)
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conf := netConf("verbs", c.Endpoints(), map[string]any{"subnet": nil, "ranges": []any{
		[]any{map[string]any{"subnet": "10.60.0.0/24"}},
		[]any{map[string]any{"subnet": "fd00:60::/64"}},
	}})

	ips, err := add(ctx, call{ID: "dual", Stdin: conf})
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() {
		t.Fatalf("dual-stack ADD got %v", ips)
	}
	s := readState(t, dump(t, cli, prefix), prefix, "verbs")
	// One block per family, holding the address (which block of the
	// range is hashed from the node's name).
	want := map[netip.Prefix]string{netip.PrefixFrom(ips[0], 26).Masked(): "node-a", netip.PrefixFrom(ips[1], 122).Masked(): "node-a"}
	if diff := cmp.Diff(want, s.blocks); diff != "" {
		t.Errorf("blocks (-want +got):\n%s", diff)
	}

	t.Run("retried ADD gets the same addresses", func(t *testing.T) {
		again, err := add(ctx, call{ID: "dual", Stdin: conf})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ips, again, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("retried ADD (-first +again):\n%s", diff)
		}
		_, err = add(ctx, call{ID: "dual", Stdin: conf, Args: "IP=10.60.0.200"})
		if code(err) != 101 {
			t.Errorf("retried ADD asking another address: %v, want code 101", err)
		}
	})

	t.Run("requested address", func(t *testing.T) {
		got, err := add(ctx, call{ID: "asked", Stdin: conf, Args: "IP=10.60.0.200"})
		if err != nil || got[0] != netip.MustParseAddr("10.60.0.200") {
			t.Fatalf("ADD with IP=10.60.0.200: %v %v", got, err)
		}
		other := netConf("verbs", c.Endpoints(), map[string]any{"node": "node-b", "subnet": nil, "ranges": []any{
			[]any{map[string]any{"subnet": "10.60.0.0/24"}}}, "runtimeConfig": nil})
		other = withKeys(t, other, map[string]any{"runtimeConfig": map[string]any{"ips": []string{"10.60.0.200"}}})
		if _, err := add(ctx, call{ID: "asked-too", Stdin: other}); code(err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "10.60.0.200") {
			t.Errorf("ADD asking a taken address: %v, want code 11 naming it", err)
		}
	})

	t.Run("CHECK", func(t *testing.T) {
		prev := map[string]any{"cniVersion": "1.1.0", "ips": []any{
			map[string]any{"address": ips[0].String() + "/24"}, map[string]any{"address": ips[1].String() + "/64"}}}
		if _, err := run(ctx, call{Command: "CHECK", ID: "dual", Stdin: withKeys(t, conf, map[string]any{"prevResult": prev})}); err != nil {
			t.Errorf("CHECK of the held addresses: %v", err)
		}
		if _, err := run(ctx, call{Command: "CHECK", ID: "nobody", Stdin: withKeys(t, conf, map[string]any{"prevResult": prev})}); code(err) != 100 {
			t.Errorf("CHECK of another attachment: %v, want code 100", err)
		}
	})

	t.Run("DEL", func(t *testing.T) {
		if _, err := run(ctx, call{Command: "DEL", ID: "unknown", Stdin: conf}); err != nil {
			t.Errorf("DEL of an unknown attachment: %v", err)
		}
		for _, id := range []string{"dual", "asked"} {
			if _, err := run(ctx, call{Command: "DEL", ID: id, Stdin: conf}); err != nil {
				t.Fatal(err)
			}
		}
		if s := readState(t, dump(t, cli, prefix), prefix, "verbs"); len(s.ips) != 0 {
			t.Errorf("after DEL etcd holds %v", s.ips)
		}
	})

	t.Run("GC without valid-attachments", func(t *testing.T) {
		if _, err := add(ctx, call{ID: "kept", Stdin: conf}); err != nil {
			t.Fatal(err)
		}
		if _, err := run(ctx, call{Command: "GC", ID: "gc", Stdin: conf}); code(err) != types.ErrInvalidNetworkConfig {
			t.Errorf("GC without cni.dev/valid-attachments: %v, want code 7", err)
		}
		if s := readState(t, dump(t, cli, prefix), prefix, "verbs"); len(s.ips) != 2 {
			t.Errorf("the refused GC released: %v", s.ips)
		}
	})
}

// closedPort returns a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// TestUnreachable: with no member answering, ADD and DEL fail with code
// 11 and STATUS with code 50 naming the endpoints, within dialTimeout and
// a second.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eps := []string{closedPort(t), closedPort(t)}
	conf := netConf("gone", eps, map[string]any{"etcd": map[string]any{"endpoints": eps, "dialTimeout": 1}})
	for _, tc := range []struct {
		command string
		code    uint
	}{{"ADD", types.ErrTryAgainLater}, {"DEL", types.ErrTryAgainLater}, {"STATUS", types.ErrPluginNotAvailable}} {
		start := time.Now()
		_, err := run(ctx, call{Command: tc.command, ID: "ctr", Stdin: conf})
		took := time.Since(start)
		if code(err) != tc.code || !strings.Contains(err.Error(), eps[0]) || !strings.Contains(err.Error(), eps[1]) {
			t.Errorf("%s: %v, want code %d naming %v", tc.command, err, tc.code, eps)
		}
		if took > 2*time.Second {
			t.Errorf("%s took %v, want at most dialTimeout 1s + 1s", tc.command, took)
		}
	}
}

// TestBadConfig: every invalid field is code 7 naming the field and its
// value, and nothing is written, with a cluster there to write to.
func TestBadConfig(t *testing.T) {
	c := startCluster(t, nil)
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eps := c.Endpoints()
	etcd := func(kv map[string]any) map[string]any {
		m := map[string]any{"endpoints": eps}
		for k, v := range kv {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name string
		ipam map[string]any
		want []string
	}{
		{"etcd missing", map[string]any{"etcd": nil}, []string{"ipam.etcd is missing"}},
		{"no endpoints", map[string]any{"etcd": map[string]any{"endpoints": []string{}}}, []string{"ipam.etcd.endpoints is empty"}},
		{"endpoint not a URL", map[string]any{"etcd": map[string]any{"endpoints": []string{"127.0.0.1:2379"}}}, []string{"ipam.etcd.endpoints[0]", "127.0.0.1:2379"}},
		{"endpoint scheme", map[string]any{"etcd": map[string]any{"endpoints": []string{"unix://x:1"}}}, []string{"ipam.etcd.endpoints[0]", "unix://x:1"}},
		{"mixed schemes", map[string]any{"etcd": map[string]any{"endpoints": []string{eps[0], "https://127.0.0.1:1"}}}, []string{"ipam.etcd.endpoints", "mix http and https"}},
		{"endpoints not a list", map[string]any{"etcd": map[string]any{"endpoints": eps[0]}}, []string{"ipam.etcd.endpoints", "wrong type"}},
		{"prefix relative", map[string]any{"etcd": etcd(map[string]any{"prefix": "ipam/"})}, []string{"ipam.etcd.prefix", `"ipam/"`}},
		{"dialTimeout zero", map[string]any{"etcd": etcd(map[string]any{"dialTimeout": 0})}, []string{"ipam.etcd.dialTimeout 0"}},
		{"dialTimeout too long", map[string]any{"etcd": etcd(map[string]any{"dialTimeout": 3600})}, []string{"ipam.etcd.dialTimeout 3600"}},
		{"dialTimeout a string", map[string]any{"etcd": etcd(map[string]any{"dialTimeout": "5s"})}, []string{"ipam.etcd.dialTimeout", "wrong type"}},
		{"caFile with http", map[string]any{"etcd": etcd(map[string]any{"caFile": "/ca.pem"})}, []string{"ipam.etcd.caFile", "/ca.pem", "not https"}},
		{"caFile missing", map[string]any{"etcd": map[string]any{"endpoints": []string{"https://127.0.0.1:1"}, "caFile": "/nonexistent/ca.pem"}}, []string{"ipam.etcd.caFile", "/nonexistent/ca.pem"}},
		{"certFile without keyFile", map[string]any{"etcd": map[string]any{"endpoints": []string{"https://127.0.0.1:1"}, "certFile": "/c.pem"}}, []string{"ipam.etcd.certFile", "/c.pem", "without ipam.etcd.keyFile"}},
		{"blockSize zero", map[string]any{"blockSize": 0}, []string{"ipam.blockSize 0"}},
		{"blockSize over 128", map[string]any{"blockSize": 129}, []string{"ipam.blockSize 129"}},
		{"blockSize larger than subnet", map[string]any{"blockSize": 20}, []string{"ipam.blockSize 20", "10.10.0.0/22"}},
		{"blockSize a string", map[string]any{"blockSize": "26"}, []string{"ipam.blockSize", "wrong type"}},
		{"node with a slash", map[string]any{"node": "a/b"}, []string{"ipam.node", `"a/b"`}},
		{"node empty", map[string]any{"node": ""}, []string{"ipam.node", `""`}},
		{"subnet", map[string]any{"subnet": "10.10.0.0/33"}, []string{"ipam.subnet", "10.10.0.0/33"}},
		{"rangeStart outside", map[string]any{"rangeStart": "10.99.0.1"}, []string{"ipam.rangeStart", "10.99.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := netConf("bad", eps, tc.ipam)
			for _, command := range []string{"ADD", "DEL", "STATUS"} {
				_, err := run(ctx, call{Command: command, ID: "ctr", Stdin: conf})
				if code(err) != types.ErrInvalidNetworkConfig {
					t.Fatalf("%s: %v, want code 7", command, err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: %q does not name %q", command, err, w)
					}
				}
			}
		})
	}
	t.Run("requested address outside the ranges", func(t *testing.T) {
		_, err := run(ctx, call{Command: "ADD", ID: "ctr", Args: "IP=10.99.0.5", Stdin: netConf("bad", eps, nil)})
		if code(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "10.99.0.5") {
			t.Errorf("ADD with IP=10.99.0.5: %v, want code 7 naming it", err)
		}
	})
	if kv := dump(t, cli, "/"); len(kv) != 0 {
		t.Errorf("bad configurations wrote %d keys: %v", len(kv), fmt.Sprint(kv))
	}
}
