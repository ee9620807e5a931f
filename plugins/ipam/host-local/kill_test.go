package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestKillLoop kills our plugin with SIGKILL at random points of ADDs,
// DELs and index reconciliations (the reference plugin changes the
// directory before every fourth run), 200 times over a network of 300
// leases. After every kill each lease file is whole, and the index lists
// every lease whenever it claims to be current; at the end the next run
// repairs everything, no attachment holds two addresses and DEL releases
// them all.
func TestKillLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	netDir := filepath.Join(dataDir, "kill")
	ours := filepath.Join(binDir, "host-local")
	stdin := netConf("kill", dataDir, "10.72.0.0/20", "")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// 300 leases as the reference plugin leaves them.
	a := netip.MustParseAddr("10.72.1.0")
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(netDir, a.String()), []byte(fmt.Sprintf("old%d\r\neth0", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		a = a.Next()
	}
	// ADDs and DELs uninterrupted, the first a reconciliation of them
	// all: kills fall within 1.5 times the median.
	var runs []time.Duration
	for range 4 {
		for _, command := range []string{"ADD", "DEL"} {
			start := time.Now()
			if _, _, err := invoke(ctx, invocation{bin: ours, command: command, id: "calibrate", ifname: "eth0", stdin: stdin}); err != nil {
				t.Fatal(err)
			}
			runs = append(runs, time.Since(start))
		}
	}
	slices.Sort(runs)
	span := int(runs[len(runs)/2].Microseconds() * 3 / 2)
	const ids = 30
	rng := rand.New(rand.NewPCG(9, 15))
	refNext := netip.MustParseAddr("10.72.8.0")
	var killed, finished, stamped int
	for i := range 200 {
		if i%4 == 0 {
			// The reference plugin adds a lease: this run reconciles.
			if err := os.WriteFile(filepath.Join(netDir, refNext.String()), []byte(fmt.Sprintf("ref%d\r\neth0", i)), 0o600); err != nil {
				t.Fatal(err)
			}
			refNext = refNext.Next()
		}
		command := []string{"ADD", "DEL"}[rng.IntN(2)]
		cmd := exec.CommandContext(ctx, ours)
		cmd.Env = []string{"CNI_COMMAND=" + command, fmt.Sprintf("CNI_CONTAINERID=k%d", rng.IntN(ids)),
			"CNI_NETNS=/dev/null", "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(span)) * time.Microsecond)
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && !ee.Exited() {
			killed++
		} else {
			finished++
			// ADD of an attachment that holds an address: code 101.
			if err != nil && !strings.Contains(out.String(), `"code": 101`) {
				t.Fatalf("run %d, %s finished with %v: %s", i, command, err, out.Bytes())
			}
		}
		for ip, content := range leaseContents(t, netDir) {
			id, ifname, ok := strings.Cut(content, "\r\n")
			if !ok || id == "" || ifname != "eth0" {
				t.Fatalf("run %d (%s): lease %s holds %q, not a whole record", i, command, ip, content)
			}
		}
		if checkIndex(t, netDir) {
			stamped++
		}
	}
	t.Logf("%d runs killed, %d finished (kills within %d µs of the start); the index claimed to be current, and was, after %d", killed, finished, span, stamped)
	if killed == 0 || finished == 0 {
		t.Fatalf("%d runs killed, %d finished: the loop needs both", killed, finished)
	}
	reconcileIndex(ctx, t, netDir, stdin)
	for _, d := range []string{netDir, indexOf(netDir)} {
		if tmp, _ := filepath.Glob(filepath.Join(d, ".tmp-*")); len(tmp) > 0 {
			t.Errorf("temp files left after the repair: %v", tmp)
		}
	}
	checkOneEach(t, netDir)
	for i := range ids {
		if _, _, err := invoke(ctx, invocation{bin: ours, command: "DEL", id: fmt.Sprintf("k%d", i), ifname: "eth0", stdin: stdin}); err != nil {
			t.Errorf("DEL k%d: %v", i, err)
		}
	}
	for ip, content := range leaseContents(t, netDir) {
		if strings.HasPrefix(content, "k") {
			t.Errorf("lease %s of %q left after DEL", ip, content)
		}
	}
	reconcileIndex(ctx, t, netDir, stdin)
}
