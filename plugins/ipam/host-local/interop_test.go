package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

// referencePlugin returns the reference host-local binary: the one named by
// HOSTLOCAL_REFERENCE, or the one Debian's containernetworking-plugins
// package installs (make deps). The test skips, saying why, when there is
// none, and fails under CI=true.
func referencePlugin(t *testing.T) string {
	t.Helper()
	path := os.Getenv("HOSTLOCAL_REFERENCE")
	if path == "" {
		path = "/usr/lib/cni/host-local"
	}
	if _, err := os.Stat(path); err != nil {
		skipOrFail(t, fmt.Sprintf("reference host-local not found (%v): install containernetworking-plugins (make deps) or set HOSTLOCAL_REFERENCE", err))
	}
	return path
}

// execPlugin runs the plugin at bin with one CNI command and returns the
// address an ADD got.
func execPlugin(ctx context.Context, t *testing.T, bin, command, id, stdin string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=/dev/null",
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(bin)}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s %s %s: %v: %s", bin, command, id, err, out.Bytes())
		return ""
	}
	if command != "ADD" {
		return ""
	}
	var r current.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || len(r.IPs) != 1 {
		t.Errorf("%s ADD %s printed %q: %v", bin, id, out.Bytes(), err)
		return ""
	}
	return r.IPs[0].Address.IP.String()
}

// TestInteropWithReference runs the reference plugin and ours on one
// network directory, in turns and at once: each continues the other's round
// robin, finds and releases the other's leases, and no address is handed
// out twice.
func TestInteropWithReference(t *testing.T) {
	ref := referencePlugin(t)
	ours := filepath.Join(binDir, "host-local")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	stdin := `{"cniVersion":"1.0.0","name":"mixed","type":"host-local",` +
		`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","subnet":"10.50.0.0/24"}}`
	netDir := filepath.Join(dataDir, "mixed")

	steps := []struct {
		bin, command, id, want string
	}{
		{ref, "ADD", "ref-1", "10.50.0.2"},
		{ref, "ADD", "ref-2", "10.50.0.3"},
		{ours, "ADD", "ours-1", "10.50.0.4"}, // continues the reference's round robin
		{ref, "ADD", "ref-3", "10.50.0.5"},   // and the other way round
		{ours, "CHECK", "ref-2", ""},
		{ours, "DEL", "ref-1", ""}, // ours releases a reference lease
		{ref, "DEL", "ours-1", ""}, // the reference releases ours
		{ours, "ADD", "ours-1", "10.50.0.6"},
		{ref, "CHECK", "ours-1", ""},
		{ours, "DEL", "ref-2", ""},
		{ref, "DEL", "ref-3", ""},
		{ref, "DEL", "ours-1", ""},
	}
	for _, s := range steps {
		got := execPlugin(ctx, t, s.bin, s.command, s.id, stdin)
		if got != s.want {
			t.Fatalf("%s %s %s got address %q, want %q", s.bin, s.command, s.id, got, s.want)
		}
	}
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Fatalf("leases left: %v", files)
	}

	// At once: 16 processes of each allocate, then the other side releases.
	const n = 16
	type job struct{ bin, id string }
	var jobs []job
	for i := range n {
		jobs = append(jobs, job{ref, fmt.Sprintf("r%d", i)}, job{ours, fmt.Sprintf("o%d", i)})
	}
	got := make([]string, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() { got[i] = execPlugin(ctx, t, j.bin, "ADD", j.id, stdin) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, a := range got {
		if a == "" || seen[a] {
			t.Errorf("ADD %s got %q: empty or handed out twice", jobs[i].id, a)
		}
		seen[a] = true
	}
	files := leaseFiles(t, netDir)
	var want []string
	for a := range seen {
		want = append(want, a)
	}
	sort.Strings(files)
	sort.Strings(want)
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("lease files (-want +got):\n%s", diff)
	}
	for _, j := range jobs {
		other := ref
		if j.bin == ref {
			other = ours
		}
		wg.Go(func() { execPlugin(ctx, t, other, "DEL", j.id, stdin) })
	}
	wg.Wait()
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Errorf("leases left after crossed DELs: %v", files)
	}
}
