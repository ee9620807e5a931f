package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

// indexOf is the index directory of the network directory netDir.
func indexOf(netDir string) string {
	return filepath.Join(filepath.Dir(netDir), ".host-local-index", filepath.Base(netDir))
}

// readIndex reads the index of netDir as the tests know its format (entries
// are symbolic links "<id>+<ifname>" to "<ip>,<ip>"; the tests' owners need
// no escaping): every entry's owner, in the lease files' "<id>\r\n<ifname>"
// form, with the addresses it lists; and whether the stamp records the
// directory's current mtime, that is whether the index claims to be
// current.
func readIndex(t *testing.T, netDir string) (entries map[string][]string, current bool) {
	t.Helper()
	index := indexOf(netDir)
	names, err := os.ReadDir(index)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	entries = map[string][]string{}
	for _, n := range names {
		name := n.Name()
		if strings.HasPrefix(name, ".tmp-") {
			continue // a temp file left by a crash, removed by the next reconciliation
		}
		if name == "stamp" {
			data, err := os.ReadFile(filepath.Join(index, name))
			if err != nil {
				t.Fatal(err)
			}
			v, ok := strings.CutPrefix(string(data), "# host-local index stamp v2\n")
			fi, err := os.Stat(netDir)
			if err != nil {
				t.Fatal(err)
			}
			current = ok && strings.TrimSpace(v) == strconv.FormatInt(fi.ModTime().UnixNano(), 10)
			continue
		}
		target, err := os.Readlink(filepath.Join(index, name))
		id, ifname, ok := strings.Cut(name, "+")
		if err != nil || !ok || strings.Contains(name, "%") {
			t.Errorf("index entry %s: not an entry of a plain owner (%v)", name, err)
			continue
		}
		owner := id
		if ifname != "" {
			owner += "\r\n" + ifname
		}
		entries[owner] = strings.Split(target, ",")
	}
	return entries, current
}

// checkOneEach asserts that no container holds two leases (the tests use
// one range set and one interface) and returns every container's.
func checkOneEach(t *testing.T, netDir string) map[string][]string {
	t.Helper()
	held := map[string][]string{}
	for ip, content := range leaseContents(t, netDir) {
		id, _, _ := strings.Cut(content, "\r\n")
		held[id] = append(held[id], ip)
	}
	for id, ips := range held {
		if len(ips) > 1 {
			t.Errorf("%s holds %v, want at most one address", id, ips)
		}
	}
	return held
}

// checkIndex asserts that the index of netDir lists exactly the lease
// files, by owner, if it claims to be current. It reports whether it did.
func checkIndex(t *testing.T, netDir string) bool {
	t.Helper()
	entries, current := readIndex(t, netDir)
	if !current {
		return false
	}
	want := map[string][]string{}
	for ip, content := range leaseContents(t, netDir) {
		o := strings.TrimSpace(content)
		want[o] = append(want[o], ip)
	}
	for o := range want {
		slices.Sort(want[o])
	}
	for o := range entries {
		slices.Sort(entries[o])
	}
	if diff := cmp.Diff(want, entries); diff != "" {
		t.Errorf("index claims to be current but differs from the leases (-leases +index):\n%s", diff)
	}
	return true
}

// reconcileIndex has our plugin bring the index of the network up to date
// (a CHECK reads it) and checks it then lists exactly the leases.
func reconcileIndex(ctx context.Context, t *testing.T, netDir, stdin string) {
	t.Helper()
	_, _, err := invoke(ctx, invocation{bin: filepath.Join(binDir, "host-local"), command: "CHECK", id: "index-probe", ifname: "eth0", stdin: stdin})
	if cniCode(err) != 100 {
		t.Fatalf("CHECK of an attachment without lease = %v, want code 100", err)
	}
	if !checkIndex(t, netDir) {
		t.Error("index not stamped current after our CHECK")
	}
}

// TestMixedWithReference shares one network directory with the reference
// plugin at 64 processes at once: 32 ADDs of each, then each side DELs
// what the other added, then random ADDs and DELs of 40 attachments by
// either plugin. No address is handed out twice, no attachment holds two,
// nothing leaks, and the index lists exactly the leases whenever it claims
// to be current.
func TestMixedWithReference(t *testing.T) {
	ref := referencePlugin(t)
	ours := filepath.Join(binDir, "host-local")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	netDir := filepath.Join(dataDir, "shared")
	// 1.0.0: the newest version the reference of Debian 12 speaks.
	stdin := strings.Replace(netConf("shared", dataDir, "10.70.0.0/24", ""), `"1.1.0"`, `"1.0.0"`, 1)
	other := map[string]string{ours: ref, ref: ours}
	name := map[string]string{ours: "ours", ref: "reference"}

	// 32 ADDs by each at once.
	type job struct{ bin, id string }
	var jobs []job
	for i := range 32 {
		jobs = append(jobs, job{ref, fmt.Sprintf("r%d", i)}, job{ours, fmt.Sprintf("o%d", i)})
	}
	got := make([]string, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			var out []byte
			out, _, errs[i] = invoke(ctx, invocation{bin: j.bin, command: "ADD", id: j.id, ifname: "eth0", stdin: stdin})
			var r current.Result
			if errs[i] == nil {
				if err := json.Unmarshal(out, &r); err != nil || len(r.IPs) != 1 {
					errs[i] = fmt.Errorf("printed %q: %v", out, err)
				} else {
					got[i] = r.IPs[0].Address.IP.String()
				}
			}
		})
	}
	wg.Wait()
	holder := map[string]string{}
	for i, j := range jobs {
		if errs[i] != nil {
			t.Fatalf("%s ADD %s: %v", name[j.bin], j.id, errs[i])
		}
		if prev, dup := holder[got[i]]; dup {
			t.Errorf("%s handed to %s and %s", got[i], prev, j.id)
		}
		holder[got[i]] = j.id
	}
	leases := leaseContents(t, netDir)
	if len(leases) != len(jobs) {
		t.Errorf("%d lease files after %d ADDs", len(leases), len(jobs))
	}
	for ip, content := range leases {
		if want := holder[ip] + "\r\neth0"; content != want {
			t.Errorf("lease %s holds %q, want %q", ip, content, want)
		}
	}

	// Each side DELs what the other added.
	for i, j := range jobs {
		wg.Go(func() {
			_, _, errs[i] = invoke(ctx, invocation{bin: other[j.bin], command: "DEL", id: j.id, ifname: "eth0", stdin: stdin})
		})
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			t.Errorf("%s DEL %s: %v", name[other[j.bin]], j.id, errs[i])
		}
	}
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Fatalf("leases left after the crossed DELs: %v", files)
	}
	reconcileIndex(ctx, t, netDir, stdin)

	// Random ADDs and DELs of 40 attachments, by either plugin, 64 at once.
	const ids, workers, rounds = 40, 64, 6
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 15))
			for range rounds {
				bin := []string{ours, ref}[rng.IntN(2)]
				in := invocation{bin: bin, command: []string{"ADD", "DEL"}[rng.IntN(2)], id: fmt.Sprintf("x%d", rng.IntN(ids)), ifname: "eth0", stdin: stdin}
				_, errOut, err := invoke(ctx, in)
				// ADD of an attachment that holds an address fails
				// (ours: code 101; the reference: its own message).
				if err != nil && !(in.command == "ADD" && (cniCode(err) == 101 || strings.Contains(err.Error(), "duplicate allocation"))) {
					t.Errorf("%s %s %s: %v (stderr %q)", name[bin], in.command, in.id, err, errOut)
				}
			}
		})
	}
	wg.Wait()
	held := checkOneEach(t, netDir)
	t.Logf("%d of %d attachments hold an address after the random phase; index current: %v", len(held), ids, checkIndex(t, netDir))
	// Both plugins find every lease, by the owner the file names.
	for id := range held {
		for _, bin := range []string{ours, ref} {
			if _, _, err := invoke(ctx, invocation{bin: bin, command: "CHECK", id: id, ifname: "eth0", stdin: stdin}); err != nil {
				t.Errorf("%s CHECK %s, which holds %v: %v", name[bin], id, held[id], err)
			}
		}
	}
	reconcileIndex(ctx, t, netDir, stdin)
	// Ours alone now: the index it stamps lists exactly the leases.
	for i := range 8 {
		wg.Go(func() {
			if _, _, err := invoke(ctx, invocation{bin: ours, command: "ADD", id: fmt.Sprintf("late%d", i), ifname: "eth0", stdin: stdin}); err != nil {
				t.Errorf("ours ADD late%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if !checkIndex(t, netDir) {
		t.Error("index not current after ours alone changed the directory")
	}

	// DEL everything, each attachment by either plugin: nothing is left.
	for i := range ids + 8 {
		id := fmt.Sprintf("x%d", i)
		if i >= ids {
			id = fmt.Sprintf("late%d", i-ids)
		}
		bin := []string{ours, ref}[i%2]
		wg.Go(func() {
			if _, _, err := invoke(ctx, invocation{bin: bin, command: "DEL", id: id, ifname: "eth0", stdin: stdin}); err != nil {
				t.Errorf("%s DEL %s: %v", name[bin], id, err)
			}
		})
	}
	wg.Wait()
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Errorf("leases left after DEL of every attachment: %v", files)
	}
	reconcileIndex(ctx, t, netDir, stdin)
	if entries, _ := readIndex(t, netDir); len(entries) != 0 {
		t.Errorf("index entries left after DEL of every attachment: %v", entries)
	}
}
