package hostlocal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// TestLockWaitEndsWithContext holds the network's lock as a hung process
// would and checks that every verb gives up when its context ends, with
// code 11 naming the network directory, and works once the lock is free.
func TestLockWaitEndsWithContext(t *testing.T) {
	dataDir := t.TempDir()
	stdin := `{"cniVersion":"1.1.0","name":"held","type":"host-local","cni.dev/valid-attachments":[],` +
		`"ipam":{"type":"host-local","dataDir":"` + dataDir + `","subnet":"10.65.0.0/24"}}`
	p := OnDisk(t.Logf)
	if _, err := p.AddResult(t.Context(), cmdArgs("c1", stdin, "")); err != nil {
		t.Fatal(err)
	}
	lock, err := os.Open(filepath.Join(dataDir, "held", "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	verbs := map[string]func(context.Context) error{
		"ADD":    func(ctx context.Context) error { _, err := p.AddResult(ctx, cmdArgs("c2", stdin, "")); return err },
		"DEL":    func(ctx context.Context) error { return p.Del(ctx, cmdArgs("c1", stdin, "")) },
		"CHECK":  func(ctx context.Context) error { return p.Check(ctx, cmdArgs("c1", stdin, "")) },
		"GC":     func(ctx context.Context) error { return p.GC(ctx, cmdArgs("", stdin, "")) },
		"STATUS": func(ctx context.Context) error { return p.Status(ctx, cmdArgs("", stdin, "")) },
	}
	for name, verb := range verbs {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- verb(ctx) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s still waits for the lock a minute after its context ended", name)
		}
		cancel()
		var te *types.Error
		if !errors.As(err, &te) || te.Code != types.ErrTryAgainLater || !strings.Contains(te.Msg, filepath.Join(dataDir, "held")) {
			t.Errorf("%s with the lock held = %v, want code 11 naming the network directory", name, err)
		}
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(t.Context(), cmdArgs("c1", stdin, "")); err != nil {
		t.Errorf("CHECK once the lock is free: %v", err)
	}
	if err := p.Del(t.Context(), cmdArgs("c1", stdin, "")); err != nil {
		t.Errorf("DEL once the lock is free: %v", err)
	}
}
