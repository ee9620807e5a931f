package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/host-local/store"
)

func att(id string) store.Attachment { return store.NewAttachment(id, "eth0") }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// allocated returns the addresses of allocs as strings.
func allocated(allocs []Allocation) []string {
	var out []string
	for _, a := range allocs {
		out = append(out, fmt.Sprintf("%d:%s gw %s", a.Set, a.Address, a.Gateway))
	}
	return out
}

func TestAllocateRoundRobin(t *testing.T) {
	ctx := t.Context()
	st := store.NewFake()
	a := New(st, []RangeSet{{mustRange(t, "10.0.0.0/29", "", "", "")}})
	var got []string
	for i := range 5 {
		allocs, err := a.Allocate(ctx, att(fmt.Sprint("c", i)), nil)
		if err != nil {
			t.Fatalf("Allocate #%d: %v", i, err)
		}
		got = append(got, allocated(allocs)...)
	}
	want := []string{
		"0:10.0.0.2/29 gw 10.0.0.1", "0:10.0.0.3/29 gw 10.0.0.1", "0:10.0.0.4/29 gw 10.0.0.1",
		"0:10.0.0.5/29 gw 10.0.0.1", "0:10.0.0.6/29 gw 10.0.0.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("allocations (-want +got):\n%s", diff)
	}

	// The pool is full: the next one fails naming the set.
	_, err := a.Allocate(ctx, att("c5"), nil)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Set != 0 {
		t.Fatalf("Allocate on a full pool = %v, want *ExhaustedError for set 0", err)
	}
	if want := "range set 0 (10.0.0.1-10.0.0.6) has no free address"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	// Release c1 (10.0.0.3); round robin continues after .6, wraps, and
	// finds .3, not the lowest free address first.
	if _, err := a.Release(ctx, att("c1")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Release(ctx, att("c3")); err != nil {
		t.Fatal(err)
	}
	allocs, err := a.Allocate(ctx, att("c6"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0:10.0.0.3/29 gw 10.0.0.1"}, allocated(allocs)); diff != "" {
		t.Errorf("after release (-want +got):\n%s", diff)
	}
	allocs, err = a.Allocate(ctx, att("c7"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"0:10.0.0.5/29 gw 10.0.0.1"}, allocated(allocs)); diff != "" {
		t.Errorf("round robin continues after last (-want +got):\n%s", diff)
	}
	if st.Locked() {
		t.Error("store left locked")
	}
}

func TestAllocate(t *testing.T) {
	ctx := t.Context()
	v4 := func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "10.0.0.0/29", "", "", "")} }
	v6 := func(t *testing.T) RangeSet { return RangeSet{mustRange(t, "fd00::/125", "", "", "")} }
	tests := []struct {
		name      string
		sets      func(t *testing.T) []RangeSet
		existing  map[string]store.Attachment
		last      map[string]string
		requested map[int]string
		want      []string
		wantErr   string
	}{
		{
			name: "dual stack: one address per range set",
			sets: func(t *testing.T) []RangeSet { return []RangeSet{v4(t), v6(t)} },
			want: []string{"0:10.0.0.2/29 gw 10.0.0.1", "1:fd00::2/125 gw fd00::1"},
		},
		{
			name:     "taken addresses are skipped",
			sets:     func(t *testing.T) []RangeSet { return []RangeSet{v4(t)} },
			existing: map[string]store.Attachment{"10.0.0.2": att("x"), "10.0.0.3": att("y")},
			want:     []string{"0:10.0.0.4/29 gw 10.0.0.1"},
		},
		{
			name: "gateway is never handed out",
			sets: func(t *testing.T) []RangeSet {
				return []RangeSet{{mustRange(t, "10.0.0.0/29", "10.0.0.3", "10.0.0.4", "10.0.0.3")}}
			},
			want: []string{"0:10.0.0.4/29 gw 10.0.0.3"},
		},
		{
			name: "continues from the last reserved address",
			sets: func(t *testing.T) []RangeSet { return []RangeSet{v4(t), v6(t)} },
			last: map[string]string{"0": "10.0.0.4", "1": "fd00::6"},
			want: []string{"0:10.0.0.5/29 gw 10.0.0.1", "1:fd00::7/125 gw fd00::1"},
		},
		{
			name:      "requested address",
			sets:      func(t *testing.T) []RangeSet { return []RangeSet{v4(t), v6(t)} },
			requested: map[int]string{1: "fd00::5"},
			want:      []string{"0:10.0.0.2/29 gw 10.0.0.1", "1:fd00::5/125 gw fd00::1"},
		},
		{
			name:      "requested address taken",
			sets:      func(t *testing.T) []RangeSet { return []RangeSet{v4(t)} },
			existing:  map[string]store.Attachment{"10.0.0.5": att("x")},
			requested: map[int]string{0: "10.0.0.5"},
			wantErr:   "requested address 10.0.0.5 in range set 0 is already leased",
		},
		{
			name:      "requested gateway",
			sets:      func(t *testing.T) []RangeSet { return []RangeSet{v4(t)} },
			requested: map[int]string{0: "10.0.0.1"},
			wantErr:   "requested address 10.0.0.1 is the gateway of range set 0",
		},
		{
			name:      "requested address outside the set",
			sets:      func(t *testing.T) []RangeSet { return []RangeSet{v4(t)} },
			requested: map[int]string{0: "10.9.0.1"},
			wantErr:   "requested address 10.9.0.1 is outside every range of range set 0",
		},
		{
			name:     "duplicate ADD for the same attachment",
			sets:     func(t *testing.T) []RangeSet { return []RangeSet{v4(t)} },
			existing: map[string]store.Attachment{"10.0.0.6": att("me")},
			wantErr:  `container "me" interface "eth0" already holds 10.0.0.6 in range set 0`,
		},
		{
			name:     "duplicate through a legacy lease of the container",
			sets:     func(t *testing.T) []RangeSet { return []RangeSet{v4(t)} },
			existing: map[string]store.Attachment{"10.0.0.6": {ContainerID: "me"}},
			wantErr:  `container "me" interface "eth0" already holds 10.0.0.6 in range set 0`,
		},
		{
			name: "second set exhausted",
			sets: func(t *testing.T) []RangeSet {
				return []RangeSet{v4(t), {mustRange(t, "10.1.0.0/30", "", "", "")}}
			},
			existing: map[string]store.Attachment{"10.1.0.2": att("x")},
			wantErr:  "range set 1 (10.1.0.1-10.1.0.2) has no free address",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := store.NewFake()
			for ip, o := range tt.existing {
				st.Add(netip.MustParseAddr(ip), o)
			}
			for id, ip := range tt.last {
				st.SetLastReserved(id, netip.MustParseAddr(ip))
			}
			before := st.Snapshot()
			req := map[int]netip.Addr{}
			for i, ip := range tt.requested {
				req[i] = netip.MustParseAddr(ip)
			}
			allocs, err := New(st, tt.sets(t)).Allocate(ctx, att("me"), req)
			if st.Locked() {
				t.Error("store left locked")
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Allocate error = %v, want %q", err, tt.wantErr)
				}
				if diff := cmp.Diff(before, st.Snapshot()); diff != "" {
					t.Errorf("failed Allocate changed the leases (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			if diff := cmp.Diff(tt.want, allocated(allocs)); diff != "" {
				t.Errorf("allocations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReleaseAndLookup(t *testing.T) {
	ctx := t.Context()
	st := store.NewFake()
	st.Add(netip.MustParseAddr("10.0.0.2"), att("a"))
	st.Add(netip.MustParseAddr("fd00::2"), att("a"))
	st.Add(netip.MustParseAddr("10.0.0.3"), store.NewAttachment("a", "net1"))
	st.Add(netip.MustParseAddr("10.0.0.4"), store.Attachment{ContainerID: "old"})
	a := New(st, []RangeSet{{mustRange(t, "10.0.0.0/24", "", "", "")}})

	got, err := a.Lookup(ctx, att("a"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(addrs("10.0.0.2", "fd00::2"), got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
	tests := []struct {
		owner store.Attachment
		want  []netip.Addr
	}{
		{att("a"), addrs("10.0.0.2", "fd00::2")},
		{att("a"), nil}, // idempotent
		{att("nobody"), nil},
		{att("old"), addrs("10.0.0.4")}, // legacy lease of the container
		{store.NewAttachment("a", "net1"), addrs("10.0.0.3")},
	}
	for _, tt := range tests {
		got, err := a.Release(ctx, tt.owner)
		if err != nil {
			t.Fatalf("Release(%v): %v", tt.owner, err)
		}
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Errorf("Release(%v) (-want +got):\n%s", tt.owner, diff)
		}
	}
	if n := len(st.Snapshot()); n != 0 {
		t.Errorf("%d leases left, want 0", n)
	}
}

func TestGC(t *testing.T) {
	ctx := t.Context()
	st := store.NewFake()
	st.Add(netip.MustParseAddr("10.0.0.2"), att("keep"))
	st.Add(netip.MustParseAddr("10.0.0.3"), att("gone"))
	st.Add(netip.MustParseAddr("10.0.0.4"), store.NewAttachment("keep", "net9"))
	st.Add(netip.MustParseAddr("10.0.0.5"), store.Attachment{ContainerID: "keep"})
	st.Add(netip.MustParseAddr("10.0.0.6"), store.Attachment{ContainerID: "gone"})
	st.Add(netip.MustParseAddr("10.0.0.7"), store.Attachment{})
	// Not valid UTF-8: valid attachments (JSON) cannot name it; it stays.
	st.Add(netip.MustParseAddr("10.0.0.8"), store.NewAttachment("gone", "e\xff"))
	st.Add(netip.MustParseAddr("10.0.0.9"), store.NewAttachment("gone", "e\uFFFD"))
	a := New(st, []RangeSet{{mustRange(t, "10.0.0.0/24", "", "", "")}})
	if _, err := a.GC(ctx, []store.Attachment{store.NewAttachment(" keep ", "eth0")}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]store.Attachment{
		netip.MustParseAddr("10.0.0.2"): att("keep"),
		netip.MustParseAddr("10.0.0.5"): {ContainerID: "keep"},
		netip.MustParseAddr("10.0.0.8"): store.NewAttachment("gone", "e\xff"),
	}
	if diff := cmp.Diff(want, st.Snapshot()); diff != "" {
		t.Errorf("after GC (-want +got):\n%s", diff)
	}
}

func TestStatus(t *testing.T) {
	ctx := t.Context()
	sets := []RangeSet{
		{mustRange(t, "10.0.0.0/24", "", "", "")},
		{mustRange(t, "10.1.0.0/29", "", "", "")},
	}
	st := store.NewFake()
	a := New(st, sets)
	if err := a.Status(ctx); err != nil {
		t.Fatalf("Status on an empty store: %v", err)
	}
	for i := 2; i <= 6; i++ {
		st.Add(netip.MustParseAddr(fmt.Sprintf("10.1.0.%d", i)), att(fmt.Sprint(i)))
	}
	// A lease outside the ranges does not count.
	st.Add(netip.MustParseAddr("10.1.0.7"), att("bcast"))
	err := a.Status(ctx)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Set != 1 {
		t.Fatalf("Status on a full set = %v, want *ExhaustedError for set 1", err)
	}
	if _, err := a.Release(ctx, att("4")); err != nil {
		t.Fatal(err)
	}
	if err := a.Status(ctx); err != nil {
		t.Errorf("Status with one free address: %v", err)
	}
}
