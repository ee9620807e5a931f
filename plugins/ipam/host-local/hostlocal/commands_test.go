package hostlocal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

// fakePlugin returns a Plugin over st that prints into out.
func fakePlugin(st *store.Fake, out *bytes.Buffer) Plugin {
	return Plugin{Open: func(string, string) (store.Store, error) { return st, nil }, Out: out}
}

func cmdArgs(id, stdin, envArgs string) *pluginmain.CmdArgs {
	return &pluginmain.CmdArgs{ContainerID: id, IfName: "eth0", Netns: "/dev/null", StdinData: []byte(stdin), Args: envArgs}
}

func versionConf(v, ipam string, extra ...string) string {
	top := ""
	for _, e := range extra {
		top += e + ","
	}
	return `{"cniVersion":"` + v + `","name":"net1","type":"ipvlan",` + top + `"ipam":` + ipam + `}`
}

func TestAddResultVersions(t *testing.T) {
	ipam := `{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00::/120"}]],"routes":[{"dst":"0.0.0.0/0"}]}`
	tests := []struct {
		version string
		want    string
	}{
		{"0.3.0", `{"cniVersion":"0.3.0","ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1"},` +
			`{"version":"6","address":"fd00::2/120","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`},
		{"0.3.1", `{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1"},` +
			`{"version":"6","address":"fd00::2/120","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`},
		{"0.4.0", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1"},` +
			`{"version":"6","address":"fd00::2/120","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`},
		{"1.0.0", `{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1"},` +
			`{"address":"fd00::2/120","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1"},` +
			`{"address":"fd00::2/120","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			var out bytes.Buffer
			p := fakePlugin(store.NewFake(), &out)
			if err := p.Add(context.Background(), cmdArgs("c1", versionConf(tt.version, ipam), "")); err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddDNS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("# c\nnameserver 10.0.0.53\ndomain example.test\nsearch a.test b.test\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	p := fakePlugin(store.NewFake(), &out)
	if err := p.Add(context.Background(), cmdArgs("c1", conf(`{"subnet":"10.1.0.0/24","resolvConf":"`+path+`"}`), "")); err != nil {
		t.Fatal(err)
	}
	var got struct {
		DNS map[string]any `json:"dns"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"nameservers": []any{"10.0.0.53"}, "domain": "example.test",
		"search": []any{"a.test", "b.test"}, "options": []any{"ndots:2"},
	}
	if diff := cmp.Diff(want, got.DNS); diff != "" {
		t.Errorf("dns (-want +got):\n%s", diff)
	}
}

func TestCommandErrors(t *testing.T) {
	small := conf(`{"subnet":"10.1.0.0/30"}`) // one usable address: 10.1.0.2
	full := func() *store.Fake {
		st := store.NewFake()
		st.Add(netip.MustParseAddr("10.1.0.2"), store.NewAttachment("other", "eth0"))
		return st
	}
	tests := []struct {
		name  string
		st    func() *store.Fake
		run   func(p Plugin) error
		code  uint
		msg   string
		after map[netip.Addr]store.Attachment // leases left, when checked
	}{
		{
			name: "pool exhausted",
			st:   full,
			run:  func(p Plugin) error { return p.Add(context.Background(), cmdArgs("c1", small, "")) },
			code: 11, msg: "range set 0 (10.1.0.1-10.1.0.2) has no free address",
		},
		{
			name: "requested address taken",
			st:   full,
			run:  func(p Plugin) error { return p.Add(context.Background(), cmdArgs("c1", small, "IP=10.1.0.2")) },
			code: 11, msg: "requested address 10.1.0.2 in range set 0 is already leased",
		},
		{
			name: "requested gateway",
			st:   store.NewFake,
			run:  func(p Plugin) error { return p.Add(context.Background(), cmdArgs("c1", small, "IP=10.1.0.1")) },
			code: 7, msg: `CNI_ARGS IP "10.1.0.1" is the gateway of ipam`,
		},
		{
			name: "requested address outside the ranges",
			st:   store.NewFake,
			run:  func(p Plugin) error { return p.Add(context.Background(), cmdArgs("c1", small, "IP=10.9.0.1")) },
			code: 7, msg: `CNI_ARGS IP "10.9.0.1" is outside every range`,
		},
		{
			name: "second ADD without DEL",
			st:   full,
			run:  func(p Plugin) error { return p.Add(context.Background(), cmdArgs("other", small, "")) },
			code: 101, msg: `container "other" interface "eth0" already holds 10.1.0.2 in range set 0`,
		},
		{
			name: "second range set exhausted releases the first",
			st:   full,
			run: func(p Plugin) error {
				return p.Add(context.Background(), cmdArgs("c1", conf(`{"ranges":[[{"subnet":"10.2.0.0/24"}],[{"subnet":"10.1.0.0/30"}]]}`), ""))
			},
			code: 11, msg: "range set 1 (10.1.0.1-10.1.0.2) has no free address",
			after: map[netip.Addr]store.Attachment{netip.MustParseAddr("10.1.0.2"): store.NewAttachment("other", "eth0")},
		},
		{
			name: "missing resolv.conf",
			st:   store.NewFake,
			run: func(p Plugin) error {
				return p.Add(context.Background(), cmdArgs("c1", conf(`{"subnet":"10.1.0.0/24","resolvConf":"/nonexistent/resolv.conf"}`), ""))
			},
			code: 5, msg: `ipam.resolvConf "/nonexistent/resolv.conf": open /nonexistent/resolv.conf: no such file or directory`,
		},
		{
			name: "CHECK without lease",
			st:   store.NewFake,
			run:  func(p Plugin) error { return p.Check(context.Background(), cmdArgs("c1", small, "")) },
			code: 100, msg: `container "c1" interface "eth0" holds no lease in network "net1"`,
		},
		{
			name: "CHECK with an address not leased",
			st:   full,
			run: func(p Plugin) error {
				return p.Check(context.Background(), cmdArgs("other", conf(`{"subnet":"10.1.0.0/30"}`,
					`"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/30"},{"address":"10.1.0.1/30"}]}`), ""))
			},
			code: 100, msg: `prevResult address 10.1.0.1 is not leased to container "other" interface "eth0" in network "net1"`,
		},
		{
			name: "GC without valid attachments",
			st:   full,
			run:  func(p Plugin) error { return p.GC(context.Background(), cmdArgs("", small, "")) },
			code: 7, msg: "cni.dev/valid-attachments is missing: refusing to release every lease",
		},
		{
			name: "STATUS of a full pool",
			st:   full,
			run:  func(p Plugin) error { return p.Status(context.Background(), cmdArgs("", small, "")) },
			code: 50, msg: `network "net1": range set 0 (10.1.0.1-10.1.0.2) has no free address`,
		},
		{
			name: "store cannot open",
			st:   store.NewFake,
			run: func(p Plugin) error {
				p.Open = func(string, string) (store.Store, error) { return nil, errors.New("permission denied") }
				return p.Del(context.Background(), cmdArgs("c1", small, ""))
			},
			code: 5, msg: `open lease store of network "net1" in dataDir "/var/lib/cni/networks": permission denied`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.st()
			var out bytes.Buffer
			err := tt.run(fakePlugin(st, &out))
			checkCNIError(t, err, tt.code, tt.msg)
			if out.Len() != 0 {
				t.Errorf("printed %q on error", out.String())
			}
			if tt.after != nil {
				if diff := cmp.Diff(tt.after, st.Snapshot()); diff != "" {
					t.Errorf("leases after (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	st := store.NewFake()
	var out bytes.Buffer
	p := fakePlugin(st, &out)
	c := conf(`{"subnet":"10.1.0.0/24"}`)
	if err := p.Add(context.Background(), cmdArgs("c1", c, "")); err != nil {
		t.Fatal(err)
	}
	if err := p.Add(context.Background(), cmdArgs("c2", c, "IP=10.1.0.77")); err != nil {
		t.Fatal(err)
	}
	withPrev := conf(`{"subnet":"10.1.0.0/24"}`, `"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.77/24"}]}`)
	if err := p.Check(context.Background(), cmdArgs("c2", withPrev, "")); err != nil {
		t.Errorf("CHECK c2: %v", err)
	}
	if err := p.Check(context.Background(), cmdArgs("c1", c, "")); err != nil {
		t.Errorf("CHECK c1 without prevResult: %v", err)
	}
	if err := p.Status(context.Background(), cmdArgs("", c, "")); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	gc := conf(`{"subnet":"10.1.0.0/24"}`, `"cni.dev/valid-attachments":[{"containerID":"c2","ifname":"eth0"}]`)
	if err := p.GC(context.Background(), cmdArgs("", gc, "")); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]store.Attachment{netip.MustParseAddr("10.1.0.77"): store.NewAttachment("c2", "eth0")}
	if diff := cmp.Diff(want, st.Snapshot()); diff != "" {
		t.Errorf("after GC (-want +got):\n%s", diff)
	}
	for range 2 { // DEL is idempotent
		if err := p.Del(context.Background(), cmdArgs("c2", c, "")); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(st.Snapshot()); n != 0 {
		t.Errorf("%d leases left after DEL", n)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestAddUndoesOnLateFailure forces each step after the allocation to fail
// and checks that no lease stays behind.
func TestAddUndoesOnLateFailure(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		out   func() *bytes.Buffer
		code  uint
		msg   string
	}{
		{
			name:  "result cannot be converted to the config version",
			stdin: versionConf("9.9.9", `{"ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"10.2.0.0/24"}]]}`),
			code:  1,
			msg:   `convert result to cniVersion "9.9.9": no converter for CNI result version 1.1.0 to 9.9.9`,
		},
		{
			name:  "result cannot be printed",
			stdin: conf(`{"subnet":"10.1.0.0/24"}`),
			code:  5,
			msg:   "print result: broken pipe",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := store.NewFake()
			p := Plugin{Open: func(string, string) (store.Store, error) { return st, nil }}
			if tt.code == 5 {
				p.Out = failingWriter{}
			} else {
				p.Out = &bytes.Buffer{}
			}
			err := p.Add(context.Background(), cmdArgs("c1", tt.stdin, ""))
			checkCNIError(t, err, tt.code, tt.msg)
			if n := len(st.Snapshot()); n != 0 {
				t.Errorf("%d leases left after a failed ADD", n)
			}
		})
	}
}

// TestAddResult: the in-process form leases like Add, prints nothing, and
// returns the result in the current version.
func TestAddResult(t *testing.T) {
	st := store.NewFake()
	var out bytes.Buffer
	p := fakePlugin(st, &out)
	res, err := p.AddResult(context.Background(), cmdArgs("c1", conf(`{"subnet":"10.1.0.0/24"}`), ""))
	if err != nil {
		t.Fatalf("AddResult: %v", err)
	}
	if got := []string{res.CNIVersion, res.IPs[0].Address.String(), res.IPs[0].Gateway.String()}; !cmp.Equal(got, []string{"1.1.0", "10.1.0.2/24", "10.1.0.1"}) {
		t.Errorf("result = %v, want [1.1.0 10.1.0.2/24 10.1.0.1]", got)
	}
	if out.Len() != 0 {
		t.Errorf("AddResult printed %q", out.String())
	}
	if err := p.Del(context.Background(), cmdArgs("c1", conf(`{"subnet":"10.1.0.0/24"}`), "")); err != nil {
		t.Fatalf("Del: %v", err)
	}
	if _, err := p.AddResult(context.Background(), cmdArgs("c2", conf(`{"subnet":"10.1.0.0/24"}`), "")); err != nil {
		t.Fatalf("AddResult after Del: %v", err)
	}
}
