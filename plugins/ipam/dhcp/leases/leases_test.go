package leases

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ipvlan-cni/ipvlan-cni/plugins/ipam/dhcp/client"
)

func record(id string) *Record {
	return &Record{
		Key: Key{Network: "lan", ContainerID: id, IfName: "eth0"},
		Attachment: Attachment{
			Netns:    "/run/netns/" + id,
			Master:   "eth1",
			ClientID: []byte{255, 1, 2, 3, 4, 0, 4},
			Provide:  map[uint8][]byte{12: []byte("web-0")},
		},
		Lease: client.Lease{
			Address: netip.MustParsePrefix("192.0.2.80/24"), Server: netip.MustParseAddr("192.0.2.1"),
			Bound: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: 2 * time.Minute,
		},
	}
}

var netipComparers = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func TestStore(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "leases"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := record("a"), record("b")
	for _, r := range []*Record{a, b} {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Get(a.Key)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(a, got, netipComparers...); d != "" {
		t.Errorf("Get (-put +got):\n%s", d)
	}
	a.Lease.Duration = time.Hour
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	all, err := s.List()
	if err != nil || len(all) != 2 {
		t.Fatalf("List: %d records, %v; want 2", len(all), err)
	}
	ents, _ := os.ReadDir(s.Dir())
	if len(ents) != 2 {
		t.Errorf("%d files in the directory, want 2 (no temporary file left)", len(ents))
	}
	if err := s.Delete(a.Key); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(a.Key); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := s.Get(a.Key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
}

func TestListSkipsUndecodable(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(record("a")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "broken.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := s.List()
	if len(all) != 1 || err == nil {
		t.Errorf("List: %d records, error %v; want 1 and an error naming broken.json", len(all), err)
	}
}

func TestIdentity(t *testing.T) {
	id := record("a").Identity()
	if len(id.Provide) != 1 || id.Provide[0].Code.Code() != 12 || string(id.Provide[0].Value.ToBytes()) != "web-0" {
		t.Errorf("provide = %v, want host-name web-0", id.Provide)
	}
}
