package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ipvlan-cni/ipvlan-cni/internal/testenv"
)

// The benchmarks measure; nothing in them is asserted but that each call
// succeeds. Run them with
//
//	go test -run '^$' -bench . -benchtime 1x ./plugins/ipam/dhcp
//
// as root (natively: the LAN ones; in the VM: the ipvlan one too).

// BenchmarkLANAddDel is ADD then DEL of one attachment through libcni, the
// daemon and dnsmasq on the veth LAN: the latency of the daemon's
// exchange, with no ipvlan. Reports the p50 of each.
func BenchmarkLANAddDel(b *testing.B) {
	l := newLAN(b)
	l.startDnsmasq("192.0.2.10", "192.0.2.250")
	l.startDaemon()
	c := l.container("bench")
	list := network(b, l.socket, "10s")
	cn := cniConfig(b)
	ctx := context.Background()
	const n = 100
	var adds, dels []time.Duration
	for range b.N {
		for range n {
			t0 := time.Now()
			if _, err := cn.AddNetworkList(ctx, list, c.rt()); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := cn.DelNetworkList(ctx, list, c.rt()); err != nil {
				b.Fatal(err)
			}
			adds, dels = append(adds, t1.Sub(t0)), append(dels, time.Since(t1))
		}
	}
	b.ReportMetric(p50ms(adds), "add-p50-ms")
	b.ReportMetric(p50ms(dels), "del-p50-ms")
}

// BenchmarkIPVlanAdd is ADD of the ipvlan plugin with dhcp as its IPAM
// beside the same with host-local, in one run, container by container
// (each ADD followed by its DEL): what dhcp adds to a container's start.
// It needs ipvlan (the VM).
func BenchmarkIPVlanAdd(b *testing.B) {
	testenv.RequireKernel(b)
	l := newLAN(b)
	l.startDnsmasq("192.0.2.10", "192.0.2.250")
	l.startDaemon()
	dhcpList, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.1.0","name":"lan","plugins":[{"type":"ipvlan","master":"m0","mode":"l2",
		"ipam":{"type":"dhcp","daemonSocketPath":"` + l.socket + `"}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	hlList, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.1.0","name":"lan","plugins":[{"type":"ipvlan","master":"m0","mode":"l2",
		"ipam":{"type":"host-local","dataDir":"` + filepath.Join(l.dir, "host-local") + `","ranges":[[{"subnet":"198.51.100.0/24"}]]}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	cn := cniConfig(b)
	ctx := context.Background()
	inHost := func(f func() error) error { return l.host.Do(func(ns.NetNS) error { return f() }) }
	const n = 50
	times := map[string][]time.Duration{}
	for range b.N {
		for i := range n {
			for _, impl := range []struct {
				name string
				list *libcni.NetworkConfigList
			}{{"dhcp", dhcpList}, {"host-local", hlList}} {
				c := &container{id: fmt.Sprintf("%s-%d", impl.name, i), ns: testenv.NewNS(b)}
				var d time.Duration
				err := inHost(func() error {
					t0 := time.Now()
					if _, err := cn.AddNetworkList(ctx, impl.list, c.rt()); err != nil {
						return err
					}
					d = time.Since(t0)
					return cn.DelNetworkList(ctx, impl.list, c.rt())
				})
				if err != nil {
					b.Fatalf("%s: %v", impl.name, err)
				}
				times[impl.name] = append(times[impl.name], d)
			}
		}
	}
	b.ReportMetric(p50ms(times["dhcp"]), "dhcp-add-p50-ms")
	b.ReportMetric(p50ms(times["host-local"]), "host-local-add-p50-ms")
}

// BenchmarkRenewalCPU holds 200 leases (taken ten at a time) with the
// daemon renewing each at 5% of dnsmasq's two-minute lease (every 6 s, 33
// renewals a second) and reports the daemon's CPU time (user + system,
// from /proc) per lease renewed over 20 s.
func BenchmarkRenewalCPU(b *testing.B) {
	l := newLAN(b)
	l.startDnsmasq("192.0.2.10", "192.0.2.250")
	d := l.startDaemon("-renew-at", "0.05")
	const n = 200
	cs := make([]*container, n)
	for i := range cs {
		cs[i] = &container{id: fmt.Sprintf("r%d", i), ns: testenv.NewNS(b)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// Ten ADDs at a time, as containers start on a node; a burst of all
	// 200 at once is not what this measures.
	for i := 0; i < n; i += 10 {
		addAll(ctx, b, cniConfig(b), network(b, l.socket, "60s"), cs[i:i+10], func(f func() error) error { return f() })
	}
	for range b.N {
		cpu0, renewed0 := cpuTime(b, d.cmd.Process.Pid), strings.Count(d.output(), ": renewed ")
		time.Sleep(20 * time.Second)
		cpu1, renewed1 := cpuTime(b, d.cmd.Process.Pid), strings.Count(d.output(), ": renewed ")
		if renewed1 == renewed0 {
			b.Fatal("no lease renewed")
		}
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(renewed1-renewed0), "cpu-us/renewal")
		b.ReportMetric(float64(renewed1-renewed0)/20, "renewals/s")
	}
}

// cpuTime is the user and system time of process pid (/proc/pid/stat).
func cpuTime(b testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 14th and 15th of the whole line.
	rest := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	const ticks = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / ticks
}

func p50ms(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}
