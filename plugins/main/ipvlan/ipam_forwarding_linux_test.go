//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// referenceHostLocal is Debian's reference host-local (1.1.1, CNI <= 1.0.0);
// make vmtest ships it into the guest.
const referenceHostLocal = "/usr/lib/cni/host-local"

// TestIntegrationIPAMStatusGC: STATUS and GC reach an IPAM plugin that
// implements them, and are not sent to one that predates CNI 1.1; with
// ipamExec the host-local binary of CNI_PATH serves every verb.
func TestIntegrationIPAMStatusGC(t *testing.T) {
	t.Run("full range set answers 50", func(t *testing.T) {
		f := newNetFixture(t)
		l := f.list("1.1.0", f.plugin(map[string]any{
			"ipam": hostLocalIPAM(f.dataDir, singleIPRange("10.11.0.0/24", "10.11.0.5")),
		}))
		if err := f.status(l); err != nil {
			t.Fatalf("STATUS with a free address: %v", err)
		}
		c := f.newContainer("full-1")
		f.mustAdd(l, c.rt())
		wantCNIError(t, f.status(l), types.ErrPluginNotAvailable, "no free address")
		if err := f.del(l, c.rt()); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if err := f.status(l); err != nil {
			t.Errorf("STATUS after DEL freed the address: %v", err)
		}
	})
	t.Run("ipamExec with an IPAM without STATUS and GC", func(t *testing.T) {
		f := newNetFixture(t)
		if _, err := os.Stat(referenceHostLocal); err != nil {
			t.Fatalf("reference host-local not in the guest (make vmtest ships it): %v", err)
		}
		dir := t.TempDir()
		for name, target := range map[string]string{
			"ipvlan":     filepath.Join(testenv.PluginDir(t), "ipvlan"),
			"host-local": referenceHostLocal,
		} {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		f.cni = libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)
		l := f.list("1.1.0", f.plugin(map[string]any{"ipamExec": true}))
		if err := f.status(l); err != nil {
			t.Errorf("STATUS with an IPAM plugin that has no STATUS: %v", err)
		}
		if err := f.gc(l); err != nil {
			t.Errorf("GC with an IPAM plugin that has no GC: %v", err)
		}
		// ADD and DEL go to the reference binary (CNI <= 1.0.0): its lease
		// appears and goes.
		l = f.list("1.0.0", f.plugin(map[string]any{"ipamExec": true}))
		c := f.newContainer("exec-1")
		res := f.mustAdd(l, c.rt())
		ip := res.IPs[0].Address.IP.String()
		if owner := f.leaseOwner(ip); owner != "exec-1" {
			t.Errorf("lease %s is owned by %q, want exec-1", ip, owner)
		}
		// Only our host-local keeps an index: the reference served this ADD.
		if _, err := os.Stat(filepath.Join(f.leaseDir(), ".index")); !os.IsNotExist(err) {
			t.Errorf("lease directory has an .index (err %v): the bundled host-local ran, not the binary", err)
		}
		if err := f.del(l, c.rt()); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		f.requireNothingLeft(c)
	})
	t.Run("host-local runs in process without a binary", func(t *testing.T) {
		f := newNetFixture(t)
		dir := t.TempDir()
		if err := os.Symlink(filepath.Join(testenv.PluginDir(t), "ipvlan"), filepath.Join(dir, "ipvlan")); err != nil {
			t.Fatal(err)
		}
		f.cni = libcni.NewCNIConfigWithCacheDir([]string{dir}, t.TempDir(), nil)
		l := f.list("1.1.0", f.plugin(nil))
		c := f.newContainer("inproc-1")
		res := f.mustAdd(l, c.rt())
		if owner := f.leaseOwner(res.IPs[0].Address.IP.String()); owner != "inproc-1" {
			t.Errorf("lease owned by %q, want inproc-1", owner)
		}
		for _, step := range []struct {
			name string
			run  func() error
		}{
			{"CHECK", func() error { return f.check(l, c.rt()) }},
			{"STATUS", func() error { return f.status(l) }},
			{"GC", func() error { return f.gc(l, c.attachment()) }},
			{"DEL", func() error { return f.del(l, c.rt()) }},
		} {
			if err := step.run(); err != nil {
				t.Fatalf("%s without a host-local binary: %v", step.name, err)
			}
		}
		f.requireNothingLeft(c)

		// With ipamExec the binary is required, and its absence is said.
		le := f.list("1.1.0", f.plugin(map[string]any{"ipamExec": true}))
		c2 := f.newContainer("inproc-2")
		_, err := f.add(le, c2.rt())
		if err == nil || !strings.Contains(err.Error(), "host-local") {
			t.Errorf("ADD with ipamExec and no host-local binary = %v, want an error naming host-local", err)
		}
		f.requireNothingLeft(c2)
	})
}
