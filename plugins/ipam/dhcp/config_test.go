package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/leases"
)

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		conf string
		code uint
		msg  string // a part of the message: the field and the value
	}{
		{"not json", `{"name":`, types.ErrDecodingFailure, "decode network configuration"},
		{"broadcast not a bool", `{"name":"n","ipam":{"type":"dhcp","broadcast":"yes"}}`, types.ErrDecodingFailure, "broadcast"},
		{"no ipam", `{"name":"n"}`, types.ErrInvalidNetworkConfig, "missing ipam"},
		{"relative socket", `{"name":"n","ipam":{"type":"dhcp","daemonSocketPath":"run/dhcp.sock"}}`, types.ErrInvalidNetworkConfig, `daemonSocketPath "run/dhcp.sock"`},
		{"bad timeout", `{"name":"n","ipam":{"type":"dhcp","timeout":"soon"}}`, types.ErrInvalidNetworkConfig, `timeout "soon"`},
		{"negative timeout", `{"name":"n","ipam":{"type":"dhcp","timeout":"-1s"}}`, types.ErrInvalidNetworkConfig, `timeout "-1s"`},
		{"bad mode", `{"name":"n","mode":"l4","ipam":{"type":"dhcp"}}`, types.ErrInvalidNetworkConfig, `mode "l4"`},
		{"unknown request option", `{"name":"n","ipam":{"type":"dhcp","request":[{"option":"coffee"}]}}`, types.ErrInvalidNetworkConfig, `request option "coffee"`},
		{"request code out of range", `{"name":"n","ipam":{"type":"dhcp","request":[{"option":"255"}]}}`, types.ErrInvalidNetworkConfig, `request option "255"`},
		{"unknown provide option", `{"name":"n","ipam":{"type":"dhcp","provide":[{"option":"tea","value":"x"}]}}`, types.ErrInvalidNetworkConfig, `provide option "tea"`},
		{"provide without value", `{"name":"n","ipam":{"type":"dhcp","provide":[{"option":"host-name"}]}}`, types.ErrInvalidNetworkConfig, `provide option "host-name": want exactly one of value and fromArg`},
		{"provide with both", `{"name":"n","ipam":{"type":"dhcp","provide":[{"option":"host-name","value":"a","fromArg":"K8S_POD_NAME"}]}}`, types.ErrInvalidNetworkConfig, `provide option "host-name": want exactly one`},
		{"provide reserved", `{"name":"n","ipam":{"type":"dhcp","provide":[{"option":"53","value":"x"}]}}`, types.ErrInvalidNetworkConfig, `provide option "53": the plugin sets option 53 itself`},
		{"provide too long", `{"name":"n","ipam":{"type":"dhcp","provide":[{"option":"host-name","value":"` + strings.Repeat("a", 256) + `"}]}}`, types.ErrInvalidNetworkConfig, "256 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.conf), "c1", "eth0", "/run/netns/c1", "")
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a *types.Error", err)
			}
			if te.Code != tt.code || !strings.Contains(te.Msg, tt.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", te.Code, te.Msg, tt.code, tt.msg)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	p, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"lan","type":"ipvlan","master":"eth1","mode":"l3","ipam":{"type":"dhcp"}}`),
		"c1", "net1", "/run/netns/c1", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.SocketPath != "/run/cni/dhcp.sock" || p.Timeout != 10*time.Second {
		t.Errorf("socket %q timeout %s, want /run/cni/dhcp.sock 10s", p.SocketPath, p.Timeout)
	}
	type summary struct {
		Key               leases.Key
		Master, Mode      string
		Broadcast         bool
		Request           []uint8
		ClientIDFromParse bool
	}
	got := summary{p.Req.Key, p.Req.Master, p.Req.Mode, p.Req.Broadcast, p.Req.Request, bytes.Equal(p.Req.ClientID, ClientID(p.Req.Key))}
	want := summary{leases.Key{Network: "lan", ContainerID: "c1", IfName: "net1"}, "eth1", "l3", true, defaultRequest, true}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("request (-want +got):\n%s", d)
	}
}

func TestParseConfigOptions(t *testing.T) {
	conf := `{"name":"lan","ipam":{"type":"dhcp","broadcast":false,"timeout":"3s",
		"request":[{"skipDefault":true,"option":"subnet-mask"},{"option":"42"}],
		"provide":[{"option":"host-name","fromArg":"K8S_POD_NAME"},{"option":"user-class","fromArg":"MISSING"},
		           {"option":"dhcp-client-identifier","value":"my-id"}]}}`
	p, err := parseConfig([]byte(conf), "c1", "eth0", "", "IgnoreUnknown=1;K8S_POD_NAME=web-0")
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Broadcast bool
		Timeout   time.Duration
		Request   []uint8
		Provide   map[uint8][]byte
		ClientID  string
	}
	got := summary{p.Req.Broadcast, p.Req.Timeout, p.Req.Request, p.Req.Provide, string(p.Req.ClientID)}
	want := summary{false, 3 * time.Second, []uint8{1, 42}, map[uint8][]byte{12: []byte("web-0")}, "my-id"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("request (-want +got):\n%s", d)
	}
}

func TestClientID(t *testing.T) {
	a := ClientID(leases.Key{Network: "lan", ContainerID: "c1", IfName: "eth0"})
	if len(a) != 1+4+2+16 || a[0] != 255 || a[5] != 0 || a[6] != 4 {
		t.Fatalf("client id % x: want type 255, a 4-byte IAID, DUID-UUID (00 04) and 16 bytes", a)
	}
	if b := ClientID(leases.Key{Network: "lan", ContainerID: "c1", IfName: "eth0"}); !bytes.Equal(a, b) {
		t.Errorf("not stable: % x then % x", a, b)
	}
	for _, k := range []leases.Key{
		{Network: "lan", ContainerID: "c2", IfName: "eth0"},
		{Network: "lan", ContainerID: "c1", IfName: "eth1"},
		{Network: "lan2", ContainerID: "c1", IfName: "eth0"},
		{Network: "lan", ContainerID: "c1e", IfName: "th0"},
	} {
		if bytes.Equal(a, ClientID(k)) {
			t.Errorf("%v has the client id of lan/c1/eth0", k)
		}
	}
}
