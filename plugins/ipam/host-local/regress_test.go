package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

// invocation is one run of a host-local binary.
type invocation struct {
	bin, command, id, ifname, stdin string
	cred                            *syscall.Credential // run as this user; nil for ours
}

// invoke runs the binary as a runtime would and returns what it printed. A
// plugin that fails returns the *types.Error it printed, or the exec error
// when it printed none.
func invoke(ctx context.Context, in invocation) (stdout, stderr []byte, err error) {
	cmd := exec.CommandContext(ctx, in.bin)
	cmd.Env = []string{"CNI_COMMAND=" + in.command, "CNI_CONTAINERID=" + in.id, "CNI_NETNS=/dev/null",
		"CNI_IFNAME=" + in.ifname, "CNI_PATH=" + filepath.Dir(in.bin)}
	cmd.Stdin = strings.NewReader(in.stdin)
	if in.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var te types.Error
		if json.Unmarshal(out.Bytes(), &te) == nil && te.Code != 0 {
			return out.Bytes(), errOut.Bytes(), &te
		}
		return out.Bytes(), errOut.Bytes(), fmt.Errorf("%s %s %q: %w: %s%s", in.bin, in.command, in.id, err, out.Bytes(), errOut.Bytes())
	}
	return out.Bytes(), errOut.Bytes(), nil
}

// addAddr runs ADD and returns the one address it leased.
func addAddr(ctx context.Context, t *testing.T, in invocation) string {
	t.Helper()
	in.command = "ADD"
	out, errOut, err := invoke(ctx, in)
	if err != nil {
		t.Fatalf("ADD %q %q: %v (stderr %q)", in.id, in.ifname, err, errOut)
	}
	var r current.Result
	if err := json.Unmarshal(out, &r); err != nil || len(r.IPs) != 1 {
		t.Fatalf("ADD %q %q printed %q: %v", in.id, in.ifname, out, err)
	}
	return r.IPs[0].Address.IP.String()
}

func cniCode(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// leaseContents maps every lease file of dir to its content.
func leaseContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range leaseFiles(t, dir) {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		out[n] = string(data)
	}
	return out
}

func netConf(name, dataDir, subnet, extra string) string {
	return `{"cniVersion":"1.1.0","name":"` + name + `","type":"host-local",` + extra +
		`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","subnet":"` + subnet + `"}}`
}

// TestNonUTF8InterfaceName leases to an interface name that is not valid
// UTF-8: the owner is matched byte for byte, so a second ADD is refused, DEL
// releases the lease, and GC keeps it (cni.dev/valid-attachments is JSON and
// cannot name it).
func TestNonUTF8InterfaceName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	netDir := filepath.Join(dataDir, "utf")
	ours := filepath.Join(binDir, "host-local")
	stdin := netConf("utf", dataDir, "10.61.0.0/24", "")
	odd := invocation{bin: ours, id: "c1", ifname: "e\xff", stdin: stdin}

	got := addAddr(ctx, t, odd)
	second := odd
	second.command = "ADD"
	if out, _, err := invoke(ctx, second); cniCode(err) != 101 {
		t.Errorf("second ADD of c1 %q = %v (printed %q), want code 101", odd.ifname, err, out)
	}
	// The replacement-character spelling a JSON runtime would send is
	// another interface, with its own lease.
	addAddr(ctx, t, invocation{bin: ours, id: "c1", ifname: "e\uFFFD", stdin: stdin})
	want := map[string]string{got: "c1\r\ne\xff", "10.61.0.3": "c1\r\ne\uFFFD"}
	if diff := cmp.Diff(want, leaseContents(t, netDir)); diff != "" {
		t.Fatalf("leases (-want +got):\n%s", diff)
	}

	gc := invocation{bin: ours, command: "GC", stdin: netConf("utf", dataDir, "10.61.0.0/24", `"cni.dev/valid-attachments":[],`)}
	if _, errOut, err := invoke(ctx, gc); err != nil {
		t.Fatalf("GC: %v (stderr %q)", err, errOut)
	}
	if diff := cmp.Diff(map[string]string{got: "c1\r\ne\xff"}, leaseContents(t, netDir)); diff != "" {
		t.Errorf("leases after GC with no valid attachment (-want +got):\n%s", diff)
	}

	del := odd
	del.command = "DEL"
	if _, errOut, err := invoke(ctx, del); err != nil {
		t.Fatalf("DEL: %v (stderr %q)", err, errOut)
	}
	if files := leaseFiles(t, netDir); len(files) != 0 {
		t.Errorf("leases left after DEL of c1 %q: %v", odd.ifname, files)
	}
}

// TestSkipsBadLeases puts a name like an address that is no readable lease
// in the network directory, a directory or a lease file the plugin may not
// read (as root, the plugin then runs as nobody): every verb still works,
// leaves it alone, and the plugin says so on stderr; for the unreadable
// file, on every verb, as each reads the directory again.
func TestSkipsBadLeases(t *testing.T) {
	tests := []struct {
		name          string
		asNobody      bool
		bad           func(t *testing.T, path string)
		everyVerbSays bool
	}{
		{
			name: "directory",
			bad: func(t *testing.T, path string) {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:     "unreadable file",
			asNobody: os.Getuid() == 0,
			bad: func(t *testing.T, path string) {
				// Root's file, 0600: nobody may not read it.
				if err := os.WriteFile(path, []byte("x\r\neth0"), 0o600); err != nil {
					t.Fatal(err)
				}
				if os.Getuid() != 0 {
					if err := os.Chmod(path, 0); err != nil {
						t.Fatal(err)
					}
				}
			},
			everyVerbSays: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dataDir := t.TempDir()
			netDir := filepath.Join(dataDir, "bad")
			ours := filepath.Join(binDir, "host-local")
			stdin := netConf("bad", dataDir, "10.62.0.0/24", "")
			var cred *syscall.Credential
			if tt.asNobody {
				cred = &syscall.Credential{Uid: 65534, Gid: 65534}
				// Let nobody reach and own the network directory.
				for d := dataDir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
					if err := os.Chmod(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Chown(dataDir, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}
			if got := addAddr(ctx, t, invocation{bin: ours, id: "a", ifname: "eth0", stdin: stdin, cred: cred}); got != "10.62.0.2" {
				t.Fatalf("ADD a got %s, want 10.62.0.2", got)
			}
			tt.bad(t, filepath.Join(netDir, "10.62.0.3"))
			steps := []invocation{
				{command: "ADD", id: "b"},
				{command: "CHECK", id: "a"},
				{command: "DEL", id: "a"},
				{command: "STATUS"},
				{command: "GC", stdin: netConf("bad", dataDir, "10.62.0.0/24", `"cni.dev/valid-attachments":[{"containerID":"b","ifname":"eth0"}],`)},
				{command: "DEL", id: "b"},
			}
			var said bool
			for _, s := range steps {
				s.bin, s.ifname, s.cred = ours, "eth0", cred
				if s.stdin == "" {
					s.stdin = stdin
				}
				out, errOut, err := invoke(ctx, s)
				if err != nil {
					t.Fatalf("%s %s beside 10.62.0.3: %v", s.command, s.id, err)
				}
				if s.command == "ADD" && !strings.Contains(string(out), "10.62.0.4/24") {
					t.Errorf("ADD b printed %s, want 10.62.0.4 (10.62.0.3 is not free)", out)
				}
				says := strings.Contains(string(errOut), "skipping 10.62.0.3")
				if tt.everyVerbSays && !says && s.command != "STATUS" {
					t.Errorf("%s %s did not report 10.62.0.3 on stderr: %q", s.command, s.id, errOut)
				}
				said = said || says
			}
			if !said {
				t.Error("no verb reported 10.62.0.3 on stderr")
			}
			if _, err := os.Lstat(filepath.Join(netDir, "10.62.0.3")); err != nil {
				t.Errorf("10.62.0.3 after the verbs: %v", err)
			}
			if diff := cmp.Diff([]string{"10.62.0.3"}, leaseFiles(t, netDir)); diff != "" {
				t.Errorf("names like addresses left (-want +got):\n%s", diff)
			}
		})
	}
}

// entryInodes returns the inode of every index entry of netDir.
func entryInodes(t *testing.T, netDir string) map[string]uint64 {
	t.Helper()
	entries, err := os.ReadDir(indexOf(netDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, e := range entries {
		if e.Name() == "stamp" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Sys().(*syscall.Stat_t).Ino
	}
	return out
}

// TestReconcileWritesOnlyChanges has the reference plugin add and release a
// lease in a directory of ours, then checks that our next verb rewrites the
// index entries of the owners that changed and leaves every other entry
// untouched (same inode), so its cost follows the change, not the
// directory.
func TestReconcileWritesOnlyChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	netDir := filepath.Join(dataDir, "rec")
	ours := filepath.Join(binDir, "host-local")
	stdin := netConf("rec", dataDir, "10.63.0.0/24", "")
	for i := range 20 {
		addAddr(ctx, t, invocation{bin: ours, id: fmt.Sprintf("c%02d", i), ifname: "eth0", stdin: stdin})
	}
	before := entryInodes(t, netDir)
	if len(before) != 20 {
		t.Fatalf("%d index entries after 20 ADDs, want 20", len(before))
	}
	// The reference plugin's ADD of r1 and DEL of c05, as it does them.
	if err := os.WriteFile(filepath.Join(netDir, "10.63.0.200"), []byte("r1\r\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(netDir, "10.63.0.7")); err != nil {
		t.Fatal(err)
	}
	addAddr(ctx, t, invocation{bin: ours, id: "new", ifname: "eth0", stdin: stdin})
	after := entryInodes(t, netDir)
	var rewritten, gone, added []string
	for n, ino := range before {
		switch a, ok := after[n]; {
		case !ok:
			gone = append(gone, n)
		case a != ino:
			rewritten = append(rewritten, n)
		}
	}
	for n := range after {
		if _, ok := before[n]; !ok {
			added = append(added, n)
		}
	}
	sort.Strings(added)
	if len(rewritten) > 0 {
		t.Errorf("entries of unchanged owners rewritten: %v", rewritten)
	}
	if diff := cmp.Diff([]string{"c05+eth0"}, gone); diff != "" {
		t.Errorf("entries removed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"new+eth0", "r1+eth0"}, added); diff != "" {
		t.Errorf("entries added (-want +got):\n%s", diff)
	}
}

// skipOrFail skips a test that cannot run here, saying why, except under
// CI=true, where a test that cannot run is a failure.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", why)
	}
	t.Skip(why)
}
