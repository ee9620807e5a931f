//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// killingExec runs plugins as libcni's default executor does, and kills
// each with SIGKILL once kill (if set) has passed; it counts the plugins
// that were killed before they exited and times the others.
type killingExec struct {
	kill func() time.Duration

	mu     sync.Mutex
	killed int
	took   []time.Duration
}

func (e *killingExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if e.kill != nil {
		timer := time.AfterFunc(e.kill(), func() { _ = cmd.Process.Kill() })
		defer timer.Stop()
	}
	err := cmd.Wait()
	took := time.Since(start)
	e.mu.Lock()
	defer e.mu.Unlock()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		e.killed++
		return nil, fmt.Errorf("plugin killed after %v", took)
	}
	e.took = append(e.took, took)
	if err != nil {
		return nil, fmt.Errorf("plugin: %w: %s", err, stdout.Bytes())
	}
	return stdout.Bytes(), nil
}

func (e *killingExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (e *killingExec) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

// TestIntegrationKilledAdds kills 200 ADDs of the built binary with SIGKILL
// at a random moment, uniform over an ADD's duration, each followed by the
// runtime's DEL: afterwards no ipvlan link is left in any namespace, no
// lease and no index entry, and a fresh ADD succeeds in every namespace.
//
// An ADD's duration is measured in the same container just before, by a
// whole ADD and its DEL, so the estimate holds on a fast or a loaded host;
// an ADD that exits before its moment came is undone and tried again at a
// new moment, so each of the 200 is killed.
func TestIntegrationKilledAdds(t *testing.T) {
	const (
		adds  = 200
		tries = 10 // killing ADDs per container before the soak gives up
	)
	f := newNetFixture(t)
	l := f.list("1.1.0", f.plugin(map[string]any{"ipam": hostLocalIPAM(f.dataDir, subnetRange("10.20.0.0/16"))}))
	cache := t.TempDir()
	plain := libcni.NewCNIConfigWithCacheDir([]string{testenv.PluginDir(t)}, cache, nil)

	containers := make([]*testContainer, adds)
	var finished int // killing ADDs that exited before their moment
	for i := range containers {
		c := f.newContainer(fmt.Sprintf("soak-%03d", i))
		containers[i] = c
		killed := false
		for try := 0; try < tries && !killed; try++ {
			timer := &killingExec{}
			f.cni = libcni.NewCNIConfigWithCacheDir([]string{testenv.PluginDir(t)}, cache, timer)
			f.mustAdd(l, c.rt())
			f.cni = plain
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL %s after the timed ADD: %v", c.id, err)
			}
			took := timer.took[0]

			killer := &killingExec{kill: func() time.Duration { return rand.N(took) }}
			f.cni = libcni.NewCNIConfigWithCacheDir([]string{testenv.PluginDir(t)}, cache, killer)
			_, _ = f.add(l, c.rt()) // killed, or done before its moment came
			f.cni = plain
			if err := f.del(l, c.rt()); err != nil {
				t.Fatalf("DEL %s after the killed ADD: %v", c.id, err)
			}
			killed = killer.killed == 1
			if !killed {
				finished++
			}
		}
		if !killed {
			t.Fatalf("%s: none of %d ADDs was killed before it exited: the soak did not test what it says", c.id, tries)
		}
	}
	t.Logf("%d ADDs killed; %d more exited before their moment and were tried again", adds, finished)

	for _, c := range containers {
		if got := linkNamesWhere(t, c.h, func(l netlink.Link) bool { return l.Attrs().Name != "lo" }); len(got) > 0 {
			t.Errorf("links left in %s: %v", c.id, got)
		}
	}
	if got := linkNamesWhere(t, f.hostH, func(l netlink.Link) bool { return l.Type() == "ipvlan" }); len(got) > 0 {
		t.Errorf("ipvlan links left in the host namespace: %v", got)
	}
	if got := f.leases(); len(got) > 0 {
		t.Errorf("leases left: %v", got)
	}
	if got := f.indexEntries(); len(got) > 0 {
		t.Errorf("index entries left: %v", got)
	}

	for _, c := range containers {
		if _, err := f.add(l, c.rt()); err != nil {
			t.Errorf("fresh ADD in %s: %v", c.id, err)
			continue
		}
		if err := f.del(l, c.rt()); err != nil {
			t.Errorf("DEL %s: %v", c.id, err)
		}
	}
	if got := f.leases(); len(got) > 0 {
		t.Errorf("leases left after the fresh ADDs and DELs: %v", got)
	}
}

// TestIntegrationConcurrentAddDel runs 64 ADDs at once on one master, in
// distinct containers, then their 64 DELs at once: 64 distinct addresses,
// each on its container's interface, and nothing left.
func TestIntegrationConcurrentAddDel(t *testing.T) {
	const n = 64
	f := newNetFixture(t)
	l := f.list("1.1.0", f.plugin(nil))
	containers := make([]*testContainer, n)
	for i := range containers {
		containers[i] = f.newContainer(fmt.Sprintf("concurrent-%02d", i))
	}
	errs := make([]error, n)
	ips := make([]string, n)
	var wg sync.WaitGroup
	for i, c := range containers {
		wg.Go(func() {
			res, err := f.add(l, c.rt())
			if err != nil {
				errs[i] = err
				return
			}
			cur, err := current.NewResultFromResult(res)
			if err != nil || len(cur.IPs) != 1 {
				errs[i] = fmt.Errorf("result %v: %v", res, err)
				return
			}
			ips[i] = cur.IPs[0].Address.IP.String()
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for i, c := range containers {
		if errs[i] != nil {
			t.Errorf("ADD %s: %v", c.id, errs[i])
			continue
		}
		if other, dup := seen[ips[i]]; dup {
			t.Errorf("%s and %s both got %s", other, c.id, ips[i])
		}
		seen[ips[i]] = c.id
		if got := globalAddrsOf(t, c.h, c.link(t, testIf)); len(got) != 1 || got[0] != ips[i]+"/24" {
			t.Errorf("%s's %s has %v, want %s/24", c.id, testIf, got, ips[i])
		}
	}
	if got := f.leases(); len(got) != n {
		t.Errorf("%d leases after %d ADDs, want %d", len(got), n, n)
	}
	if got := f.indexEntries(); len(got) != n { // and so indexEntries looks in the right place
		t.Errorf("%d index entries after %d ADDs, want %d", len(got), n, n)
	}
	for i, c := range containers {
		wg.Go(func() { errs[i] = f.del(l, c.rt()) })
	}
	wg.Wait()
	for i, c := range containers {
		if errs[i] != nil {
			t.Errorf("DEL %s: %v", c.id, errs[i])
		}
		f.requireNothingLeft(c)
	}
	if got := f.indexEntries(); len(got) > 0 {
		t.Errorf("index entries left: %v", got)
	}
}

// indexEntries lists the entries of host-local's index of the network
// (<dataDir>/.host-local-index/<network>/) but its stamp.
func (f *netFixture) indexEntries() []string {
	f.t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.dataDir, ".host-local-index", testNet))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != "stamp" {
			names = append(names, e.Name())
		}
	}
	return names
}

// link looks up the container's link called name.
func (c *testContainer) link(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := c.h.LinkByName(name)
	if err != nil {
		t.Fatalf("look up %s in %s: %v", name, c.id, err)
	}
	return l
}
