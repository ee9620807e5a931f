package allocator_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/allocator"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store/disk"
)

// BenchmarkAllocateRelease measures one ADD's allocation and one DEL's
// release against the on-disk store, with 100 and with 50,000 leases
// already in one /16. The cost must not grow with the number of leases.
func BenchmarkAllocateRelease(b *testing.B) {
	ctx := b.Context()
	subnet := netip.MustParsePrefix("10.10.0.0/16")
	sets := []allocator.RangeSet{{{
		Subnet:     subnet,
		RangeStart: allocator.FirstHost(subnet),
		RangeEnd:   allocator.DefaultRangeEnd(subnet),
		Gateway:    allocator.FirstHost(subnet),
	}}}
	for _, n := range []int{100, 50000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			dataDir := b.TempDir()
			dir := filepath.Join(dataDir, "bench")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			// Write the existing leases directly, in the reference
			// format, as the reference plugin would have left them.
			a := netip.MustParseAddr("10.10.0.2")
			last := a
			for i := range n {
				content := fmt.Sprintf("existing-%d\r\neth0", i)
				if err := os.WriteFile(filepath.Join(dir, a.String()), []byte(content), 0o600); err != nil {
					b.Fatal(err)
				}
				last, a = a, a.Next()
			}
			if err := os.WriteFile(filepath.Join(dir, "last_reserved_ip.0"), []byte(last.String()), 0o600); err != nil {
				b.Fatal(err)
			}
			st, err := disk.New(dataDir, "bench", b.Logf)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			al := allocator.New(st, sets)
			// The first use builds the index once, from a full scan.
			if _, err := al.Lookup(ctx, store.NewAttachment("warm-up", "eth0")); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				owner := store.NewAttachment(fmt.Sprintf("bench-%d", i), "eth0")
				if _, err := al.Allocate(ctx, owner, nil); err != nil {
					b.Fatal(err)
				}
				released, err := al.Release(ctx, owner)
				if err != nil || len(released) != 1 {
					b.Fatalf("Release = %v, %v", released, err)
				}
				i++
			}
		})
	}
}
