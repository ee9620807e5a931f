//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
	"github.com/ipvlan-cni/ipvlan-cni/pkg/pluginmain"
)

// TestAddRollback makes ADD fail right after each of its steps and shows
// that nothing remains: no link in the container and no lease in
// host-local's store.
func TestAddRollback(t *testing.T) {
	testenv.RequireKernel(t)
	steps := []addStep{stepCreate, stepIPAM, stepSettings, stepAddress, stepUp, stepRoute}
	for _, step := range steps {
		t.Run(string(step), func(t *testing.T) {
			env := newAddEnv(t)
			injected := fmt.Errorf("injected failure after %s", step)
			_, _, err := env.add(func(s addStep) error {
				if s == step {
					return injected
				}
				return nil
			})
			if !errors.Is(err, injected) {
				t.Fatalf("add = %v, want the injected failure", err)
			}
			env.assertClean(t)
		})
	}
	t.Run("no failure", func(t *testing.T) {
		env := newAddEnv(t)
		res, out, err := env.add(nil)
		if err != nil {
			t.Fatalf("add: %v", err)
		}
		if got := len(res.IPs); got != 1 {
			t.Fatalf("result has %d IPs, want 1", got)
		}
		// What cmdAdd prints is the same result, in the configuration's version.
		printed, err := current.NewResult(out)
		if err != nil {
			t.Fatalf("decode the encoded result %s: %v", out, err)
		}
		if p := printed.(*current.Result); p.CNIVersion != "1.1.0" || len(p.IPs) != 1 || !p.IPs[0].Address.IP.Equal(res.IPs[0].Address.IP) {
			t.Errorf("encoded result = %s, want version 1.1.0 and IP %v", out, res.IPs[0].Address.IP)
		}
		if leases := env.leases(t); len(leases) != 1 {
			t.Errorf("leases after ADD = %v, want one", leases)
		}
		if _, err := env.cont.LinkByName("eth0"); err != nil {
			t.Errorf("eth0 after ADD: %v", err)
		}
		if err := env.hostNS.Do(func(ns.NetNS) error { return cmdDel(env.args) }); err != nil {
			t.Fatalf("del: %v", err)
		}
		env.assertClean(t)
	})
}

// TestAddKeepsLeasesItDidNotTake makes ADD fail while the attachment, or
// its container, already holds a lease: the lease stays, and the error is
// the first cause, with its code. A failed ADD releases only what it
// leased itself.
func TestAddKeepsLeasesItDidNotTake(t *testing.T) {
	testenv.RequireKernel(t)
	tests := []struct {
		name   string
		ifName string // of the failing ADD
		lease  string // the lease file's content, in the reference format
		setup  func(t *testing.T, e *addEnv)
		code   uint
		want   string
	}{
		// host-local answers 101: the attachment holds 10.9.0.50 already.
		{name: "attachment holds a lease", ifName: "eth0", lease: "%s\r\neth0", code: 101, want: "already holds"},
		// A legacy lease names the container only: host-local counts it as
		// eth1's too and answers 101; a DEL of eth1 would release it.
		{name: "container holds a legacy lease", ifName: "eth1", lease: "%s", code: 101, want: "already holds"},
		// The link cannot be made: a master that carries macvlan.
		{name: "master cannot carry ipvlan", ifName: "eth0", lease: "%s\r\neth0", code: types.ErrInvalidNetworkConfig, want: "macvlan",
			setup: func(t *testing.T, e *addEnv) {
				err := e.hostNS.Do(func(ns.NetNS) error {
					m, err := netlink.LinkByName("master0")
					if err != nil {
						return err
					}
					return netlink.LinkAdd(&netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "mv0", ParentIndex: m.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE})
				})
				if err != nil {
					t.Fatalf("ip link add link master0 name mv0 type macvlan: %v", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAddEnv(t)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			dir := filepath.Join(e.dataDir, "rollback")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			lease := filepath.Join(dir, "10.9.0.50")
			content := fmt.Sprintf(tc.lease, e.args.ContainerID)
			if err := os.WriteFile(lease, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			e.args.IfName = tc.ifName
			t.Setenv("CNI_IFNAME", tc.ifName)

			_, _, err := e.add(nil)
			assertCNIError(t, err, tc.code, tc.want)
			got, rerr := os.ReadFile(lease)
			if rerr != nil || string(got) != content {
				t.Errorf("lease 10.9.0.50 after the failed ADD: %q, %v; want %q kept", got, rerr, content)
			}
			if leases := e.leases(t); len(leases) != 1 {
				t.Errorf("leases after the failed ADD = %v, want only 10.9.0.50", leases)
			}
			links, err := e.cont.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range links {
				if l.Attrs().Name != "lo" {
					t.Errorf("link %s (%s) left in the container", l.Attrs().Name, l.Type())
				}
			}
		})
	}
}

type addEnv struct {
	hostNS, contNS ns.NetNS
	cont           *netlink.Handle
	dataDir        string
	args           *pluginmain.CmdArgs
	conf           *NetConf
}

func newAddEnv(t *testing.T) *addEnv {
	t.Helper()
	e := &addEnv{hostNS: testenv.NewNS(t), contNS: testenv.NewNS(t), dataDir: t.TempDir()}
	testenv.AddDummy(t, e.hostNS, "master0")
	e.cont = testenv.Handle(t, e.contNS)
	stdin := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"rollback","type":"ipvlan","master":"master0",
		"ipam":{"type":"host-local","subnet":"10.9.0.0/24","dataDir":%q,"routes":[{"dst":"0.0.0.0/0"}]}}`, e.dataDir)
	var err error
	if e.conf, err = parseConfig([]byte(stdin)); err != nil {
		t.Fatal(err)
	}
	e.args = &pluginmain.CmdArgs{ContainerID: "rollback-" + strings.ReplaceAll(t.Name(), "/", "-"), Netns: e.contNS.Path(), IfName: "eth0", StdinData: []byte(stdin)}
	// IPAM reads the same environment the runtime gives the plugin.
	t.Setenv("CNI_COMMAND", "ADD")
	t.Setenv("CNI_CONTAINERID", e.args.ContainerID)
	t.Setenv("CNI_NETNS", e.args.Netns)
	t.Setenv("CNI_IFNAME", e.args.IfName)
	t.Setenv("CNI_PATH", testenv.PluginDir(t))
	return e
}

// add runs ADD in the host namespace, as the runtime would start the plugin.
func (e *addEnv) add(fail failpoint) (res *current.Result, out []byte, err error) {
	err = e.hostNS.Do(func(ns.NetNS) error {
		res, out, err = add(context.Background(), e.args, e.conf, fail)
		return err
	})
	return res, out, err
}

// leases lists host-local's lease files: files named by an IP address.
func (e *addEnv) leases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dataDir, "rollback"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var leases []string
	for _, d := range entries {
		if net.ParseIP(d.Name()) != nil {
			leases = append(leases, d.Name())
		}
	}
	return leases
}

func (e *addEnv) assertClean(t *testing.T) {
	t.Helper()
	links, err := e.cont.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Errorf("link %s (%s) left in the container", l.Attrs().Name, l.Type())
		}
	}
	if leases := e.leases(t); len(leases) != 0 {
		t.Errorf("leases left: %v", leases)
	}
}
