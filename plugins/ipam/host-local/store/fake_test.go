package store

import (
	"context"
	"net/netip"
	"testing"
)

func TestFakeEnforcesLocking(t *testing.T) {
	f := NewFake()
	a := netip.MustParseAddr("10.0.0.2")
	calls := map[string]func() error{
		"Reserve":        func() error { _, err := f.Reserve(NewAttachment("c", "eth0"), a, "0"); return err },
		"LastReservedIP": func() error { _, err := f.LastReservedIP("0"); return err },
		"Lookup":         func() error { _, err := f.Lookup(NewAttachment("c", "eth0")); return err },
		"Release":        func() error { _, err := f.Release(NewAttachment("c", "eth0")); return err },
		"ReleaseIP":      func() error { _, err := f.ReleaseIP(a, NewAttachment("c", "eth0")); return err },
		"Reserved":       func() error { _, err := f.Reserved(); return err },
		"Leases":         func() error { _, err := f.Leases(); return err },
		"Unlock":         f.Unlock,
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s without the lock succeeded", name)
		}
	}
	if err := f.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.Lock(context.Background()); err == nil {
		t.Error("second Lock succeeded")
	}
	for name, call := range calls {
		if name == "Unlock" {
			continue
		}
		if err := call(); err != nil {
			t.Errorf("%s with the lock: %v", name, err)
		}
	}
}

func TestNewAttachmentTrims(t *testing.T) {
	if got, want := NewAttachment(" c1\t", "eth0"), (Attachment{ContainerID: "c1", IfName: "eth0"}); got != want {
		t.Errorf("NewAttachment = %+v, want %+v", got, want)
	}
}
