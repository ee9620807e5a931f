package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKilledAdds: 100 ADDs each killed with SIGKILL at a random moment,
// then DEL (even ones) or GC (odd ones): no allocation is left for a dead
// attachment, nothing is half-written, and GC keeps the live attachments
// of its node and every allocation of another node.
func TestKilledAdds(t *testing.T) {
	c := startCluster(t, nil)
	cli := client(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	confA := netConf("kill", c.Endpoints(), map[string]any{"node": "node-a"})
	confB := netConf("kill", c.Endpoints(), map[string]any{"node": "node-b"})

	live := map[string]bool{}
	for i := range 3 {
		for _, conf := range []string{confA, confB} {
			id := fmt.Sprintf("live-%d", i)
			if conf == confB {
				id = fmt.Sprintf("other-node-%d", i)
			}
			if _, err := add(ctx, call{ID: id, Stdin: conf}); err != nil {
				t.Fatal(err)
			}
			live[id] = true
		}
	}
	// Kill moments spread over four times one ADD's duration: ten run at
	// once, so each takes longer than this one alone.
	start := time.Now()
	if _, err := add(ctx, call{ID: "timing", Stdin: confA}); err != nil {
		t.Fatal(err)
	}
	span := time.Since(start) * 4
	if _, err := run(ctx, call{Command: "DEL", ID: "timing", Stdin: confA}); err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill moments in [0, %v), seed %d", span, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	delays := make([]time.Duration, 100)
	for i := range delays {
		delays[i] = time.Duration(rng.Int64N(int64(span)))
	}

	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < 100; i += 10 {
				cmd := exec.CommandContext(ctx, filepath.Join(binDir, "cluster-ipam"))
				cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + fmt.Sprintf("killed-%d", i),
					"CNI_NETNS=/dev/null", "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
				cmd.Stdin = strings.NewReader(confA)
				if err := cmd.Start(); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(delays[i])
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
	}
	wg.Wait()

	s := readState(t, dump(t, cli, prefix), prefix, "kill")
	left := 0
	for _, o := range s.ips {
		if strings.HasPrefix(o, "node-a/killed-") {
			left++
		}
	}
	t.Logf("%d of the 100 killed ADDs had committed their allocation", left)

	for i := 0; i < 100; i += 2 {
		if _, err := run(ctx, call{Command: "DEL", ID: fmt.Sprintf("killed-%d", i), Stdin: confA}); err != nil {
			t.Fatal(err)
		}
	}
	var gc map[string]any
	if err := json.Unmarshal([]byte(confA), &gc); err != nil {
		t.Fatal(err)
	}
	// node-b's attachments are not in node-a's list: GC must keep them
	// anyway, as another node's.
	var valid []map[string]string
	for i := range 3 {
		valid = append(valid, map[string]string{"containerID": fmt.Sprintf("live-%d", i), "ifname": "eth0"})
	}
	gc["cni.dev/valid-attachments"] = valid
	gcConf, _ := json.Marshal(gc)
	if _, err := run(ctx, call{Command: "GC", ID: "gc", Stdin: string(gcConf)}); err != nil {
		t.Fatal(err)
	}

	s = readState(t, dump(t, cli, prefix), prefix, "kill")
	holders := map[string]bool{}
	for a, o := range s.ips {
		_, rest, _ := strings.Cut(o, "/")
		id, _, _ := strings.Cut(rest, "/")
		if !live[id] {
			t.Errorf("%s is left to %s after DEL and GC", a, o)
		}
		if holders[o] {
			t.Errorf("%s holds two addresses", o)
		}
		holders[o] = true
	}
	if len(holders) != len(live) {
		t.Errorf("%d live attachments hold addresses, want %d: %v", len(holders), len(live), s.ips)
	}
}
