//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// referenceHostLocal is Debian's reference host-local (1.1.1, CNI <= 1.0.0);
// make vmtest ships it into the guest.
const referenceHostLocal = "/usr/lib/cni/host-local"

// TestIntegrationIPAMStatusGC: STATUS and GC reach an IPAM plugin that
// implements them, and are not sent to one that predates CNI 1.1.
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
	t.Run("IPAM without STATUS and GC is not asked", func(t *testing.T) {
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
		l := f.list("1.1.0", f.plugin(nil))
		if err := f.status(l); err != nil {
			t.Errorf("STATUS with an IPAM plugin that has no STATUS: %v", err)
		}
		if err := f.gc(l); err != nil {
			t.Errorf("GC with an IPAM plugin that has no GC: %v", err)
		}
	})
}
