package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// network is a configuration list whose one plugin is dhcp itself: libcni
// runs it as the ipvlan plugin would run its IPAM, with the whole
// configuration ("master", "mode") on stdin.
// extra are more "ipam" fields, JSON.
func network(t testing.TB, socket, timeout string, extra ...string) *libcni.NetworkConfigList {
	t.Helper()
	ipam := `"type":"dhcp","daemonSocketPath":"` + socket + `","timeout":"` + timeout + `"`
	for _, e := range extra {
		ipam += "," + e
	}
	conf := `{"cniVersion":"1.1.0","name":"lan","plugins":[{"type":"dhcp","master":"m0","mode":"l3","ipam":{` + ipam + `}}]}`
	l, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func cniConfig(t testing.TB) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
}

func wantCode(t testing.TB, err error, code uint, parts ...string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want a CNI error with code %d", err, code)
	}
	if te.Code != code {
		t.Errorf("code %d (%s), want %d", te.Code, te.Msg, code)
	}
	for _, p := range parts {
		if !strings.Contains(te.Msg, p) {
			t.Errorf("message %q does not name %q", te.Msg, p)
		}
	}
}

// TestDaemonNotRunning: STATUS says 50, ADD says why it cannot lease, DEL
// succeeds (the daemon releases later). Needs no privilege.
func TestDaemonNotRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	socket := filepath.Join(t.TempDir(), "no-daemon.sock")
	list := network(t, socket, "2s")
	cn := cniConfig(t)
	rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: "/run/netns/none", IfName: "eth0"}

	wantCode(t, cn.GetStatusNetworkList(ctx, list), types.ErrPluginNotAvailable, socket, "dhcp daemon")
	_, err := cn.AddNetworkList(ctx, list, rt)
	wantCode(t, err, types.ErrTryAgainLater, "eth0", socket, "dhcp daemon")
	if err := cn.DelNetworkList(ctx, list, rt); err != nil {
		t.Errorf("DEL with the daemon down: %v, want success", err)
	}
}

// TestBinaryConfigErrors: a bad field reaches the runtime with its code.
func TestBinaryConfigErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cn := cniConfig(t)
	rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: "/run/netns/none", IfName: "eth0"}
	_, err := cn.AddNetworkList(ctx, network(t, "/run/cni/dhcp.sock", "soon"), rt)
	wantCode(t, err, types.ErrInvalidNetworkConfig, `timeout "soon"`)
	_, err = cn.AddNetworkList(ctx, network(t, "relative.sock", "1s"), rt)
	wantCode(t, err, types.ErrInvalidNetworkConfig, `daemonSocketPath "relative.sock"`)
}
