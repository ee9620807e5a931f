package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

func TestParseConfigDefaults(t *testing.T) {
	n, err := parseConfig([]byte(`{"cniVersion":"1.1.0","name":"mynet","type":"ipvlan","master":"eth0","ipam":{"type":"host-local"}}`))
	if err != nil {
		t.Fatal(err)
	}
	got := struct {
		Master string
		Mode   Mode
		Flag   Flag
		MTU    int
		IPAM   string
	}{n.Master, n.Mode, n.Flag, n.MTU, n.IPAM.Type}
	want := struct {
		Master string
		Mode   Mode
		Flag   Flag
		MTU    int
		IPAM   string
	}{"eth0", ModeL2, FlagBridge, 0, "host-local"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parsed config (-want +got):\n%s", diff)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		conf     string
		wantCode uint
		wantMsg  string
	}{
		{"not json", `{"name":`, types.ErrDecodingFailure, "decode network configuration"},
		{"mode", `{"mode":"l4"}`, types.ErrInvalidNetworkConfig, `invalid mode "l4"`},
		{"mode case", `{"mode":"L2"}`, types.ErrInvalidNetworkConfig, `invalid mode "L2"`},
		{"flag", `{"flag":"public"}`, types.ErrInvalidNetworkConfig, `invalid flag "public"`},
		{"mtu low", `{"mtu":67}`, types.ErrInvalidNetworkConfig, "invalid mtu 67"},
		{"mtu negative", `{"mtu":-1}`, types.ErrInvalidNetworkConfig, "invalid mtu -1"},
		{"mtu huge", `{"mtu":65536}`, types.ErrInvalidNetworkConfig, "invalid mtu 65536"},
		{"mtu type", `{"mtu":"1500"}`, types.ErrDecodingFailure, "decode network configuration"},
		{"keepIPv6 type", `{"keepIPv6":"yes"}`, types.ErrDecodingFailure, "NetConf.keepIPv6"},
		{"master long", `{"master":"a-very-long-name0"}`, types.ErrInvalidNetworkConfig, `invalid master "a-very-long-name0"`},
		{"master slash", `{"master":"eth/0"}`, types.ErrInvalidNetworkConfig, `invalid master "eth/0"`},
		{"ipam path", `{"ipam":{"type":"../host-local"}}`, types.ErrInvalidNetworkConfig, `invalid ipam type "../host-local"`},
		{"ipam absolute", `{"ipam":{"type":"/bin/true"}}`, types.ErrInvalidNetworkConfig, `invalid ipam type "/bin/true"`},
		{"ipam dot", `{"ipam":{"type":".."}}`, types.ErrInvalidNetworkConfig, `invalid ipam type ".."`},
		{"prevResult", `{"cniVersion":"1.0.0","prevResult":{"ips":"x"}}`, types.ErrDecodingFailure, "prevResult"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.conf))
			assertCNIError(t, err, tc.wantCode, tc.wantMsg)
		})
	}
}

func TestRequireAddressSource(t *testing.T) {
	n, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"ipvlan"}`))
	if err != nil {
		t.Fatal(err)
	}
	assertCNIError(t, n.requireAddressSource(), types.ErrInvalidNetworkConfig, "ipam is required")

	chained, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"ipvlan",
		"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.0.0.2/24","interface":0}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chained.requireAddressSource(); err != nil {
		t.Errorf("chained config without ipam: %v", err)
	}
	if got := len(chained.prev().IPs); got != 1 {
		t.Errorf("prevResult IPs = %d, want 1", got)
	}
}

func TestValidateIfName(t *testing.T) {
	for _, name := range []string{"", "eth0/1", ".", "..", "sixteen-chars-xx", "a b", "eth0:1"} {
		t.Run(name, func(t *testing.T) {
			assertCNIError(t, validateIfName(name), types.ErrInvalidEnvironmentVariables, "CNI_IFNAME")
		})
	}
	for _, name := range []string{"eth0", "net1", "fifteen-chars-x"} {
		if err := validateIfName(name); err != nil {
			t.Errorf("validateIfName(%q) = %v, want nil", name, err)
		}
	}
}

func TestMasterFromPrevResult(t *testing.T) {
	const netns = "/run/netns/c"
	ours := &current.Interface{Name: "eth0", Sandbox: netns}
	for _, tc := range []struct {
		name      string
		ifaces    []*current.Interface
		want      string
		wantFound bool
		wantErr   bool
	}{
		{"single", []*current.Interface{{Name: "vlan10"}}, "vlan10", true, false},
		{"single in a sandbox", []*current.Interface{{Name: "vlan10", Sandbox: netns}}, "vlan10", true, false},
		{"one outside sandbox", []*current.Interface{{Name: "vlan10"}, {Name: "net1", Sandbox: netns}}, "vlan10", true, false},
		{"ours left out on CHECK", []*current.Interface{{Name: "vlan10"}, ours}, "vlan10", true, false},
		{"only ours: default route", []*current.Interface{ours}, "", false, false},
		{"none", nil, "", false, true},
		{"two on host", []*current.Interface{{Name: "a"}, {Name: "b"}}, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := masterFromPrevResult(&current.Result{Interfaces: tc.ifaces}, "eth0", netns)
			if tc.wantErr {
				assertCNIError(t, err, types.ErrInvalidNetworkConfig, "master is omitted")
				return
			}
			if err != nil || got != tc.want || found != tc.wantFound {
				t.Errorf("masterFromPrevResult = %q, %v, %v; want %q, %v", got, found, err, tc.want, tc.wantFound)
			}
		})
	}
}

// FuzzParseConfig: no input panics the parser, and whatever it accepts is
// valid (a known mode and flag, an MTU in range, a plain IPAM name).
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.1.0","name":"mynet","type":"ipvlan","master":"eth0","ipam":{"type":"host-local","subnet":"10.1.2.0/24"}}`,
		`{"cniVersion":"1.0.0","name":"n","type":"ipvlan","mode":"l3s","flag":"private","mtu":1400}`,
		`{"cniVersion":"0.3.1","name":"n","type":"ipvlan","prevResult":{"interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.0.0.2/24","interface":0}]}}`,
		`{"mode":"l4"}`, `{"mtu":-5}`, `{"ipam":{"type":"../x"}}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseConfig(data)
		if err != nil {
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a CNI error", err)
			}
			return
		}
		if _, ok := netlinkModeNames[n.Mode]; !ok {
			t.Errorf("accepted mode %q", n.Mode)
		}
		if n.Flag != FlagBridge && n.Flag != FlagPrivate && n.Flag != FlagVEPA {
			t.Errorf("accepted flag %q", n.Flag)
		}
		if n.MTU != 0 && (n.MTU < MinMTU || n.MTU > 65535) {
			t.Errorf("accepted mtu %d", n.MTU)
		}
		if n.IPAM.Type != "" && (strings.Contains(n.IPAM.Type, "/") || n.IPAM.Type == "..") {
			t.Errorf("accepted ipam type %q", n.IPAM.Type)
		}
	})
}

var netlinkModeNames = map[Mode]bool{ModeL2: true, ModeL3: true, ModeL3S: true}

func assertCNIError(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want a CNI error with code %d", err, err, code)
	}
	if e.Code != code {
		t.Errorf("error code = %d (%s), want %d", e.Code, e.Msg, code)
	}
	if !strings.Contains(e.Msg, msg) {
		t.Errorf("error message %q does not contain %q", e.Msg, msg)
	}
}

// TestParseConfigVLANAndHostAccess: vlan is an integer literal from 1 to
// 4094, anything else is code 7 naming the value; hostAccess is refused
// where it cannot work.
func TestParseConfigVLANAndHostAccess(t *testing.T) {
	for _, tc := range []struct {
		name     string
		conf     string
		wantVLAN int
		wantCode uint // 0: accepted
		wantMsg  string
	}{
		{name: "vlan absent", conf: `{}`},
		{name: "vlan null", conf: `{"vlan":null}`},
		{name: "vlan 1", conf: `{"vlan":1}`, wantVLAN: 1},
		{name: "vlan 4094", conf: `{"vlan":4094}`, wantVLAN: 4094},
		{name: "vlan 0", conf: `{"vlan":0}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan 0"},
		{name: "vlan 4095", conf: `{"vlan":4095}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan 4095"},
		{name: "vlan negative", conf: `{"vlan":-10}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan -10"},
		{name: "vlan fraction", conf: `{"vlan":10.5}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan 10.5"},
		{name: "vlan float integer", conf: `{"vlan":10.0}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan 10.0"},
		{name: "vlan exponent", conf: `{"vlan":1e1}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan 1e1"},
		{name: "vlan string", conf: `{"vlan":"10"}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: `invalid vlan "10"`},
		{name: "vlan bool", conf: `{"vlan":true}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan true"},
		{name: "vlan huge", conf: `{"vlan":99999999999999999999}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "invalid vlan 99999999999999999999"},
		{name: "vlan with linkInContainer", conf: `{"vlan":10,"linkInContainer":true}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "linkInContainer"},
		{name: "hostAccess", conf: `{"hostAccess":true}`},
		{name: "hostAccess bridge", conf: `{"hostAccess":true,"flag":"bridge","mode":"l3"}`},
		{name: "hostAccess not boolean", conf: `{"hostAccess":"yes"}`, wantCode: types.ErrDecodingFailure, wantMsg: "hostAccess"},
		{name: "hostAccess with linkInContainer", conf: `{"hostAccess":true,"linkInContainer":true}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "hostAccess with linkInContainer"},
		{name: "hostAccess private", conf: `{"hostAccess":true,"flag":"private"}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: `hostAccess with flag "private"`},
		{name: "hostAccess vepa", conf: `{"hostAccess":true,"flag":"vepa"}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: `hostAccess with flag "vepa"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := parseConfig([]byte(tc.conf))
			if tc.wantCode != 0 {
				assertCNIError(t, err, tc.wantCode, tc.wantMsg)
				return
			}
			if err != nil {
				t.Fatalf("parseConfig(%s): %v", tc.conf, err)
			}
			if n.VLAN != tc.wantVLAN {
				t.Errorf("vlan = %d, want %d", n.VLAN, tc.wantVLAN)
			}
		})
	}
}
