package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// fullDiskEnv, when set, names the directory the re-executed test mounts a
// small file system on.
const fullDiskEnv = "HOSTLOCAL_FULL_DISK_DIR"

// TestFullDisk runs DEL and CHECK on a file system with no free block and
// no free inode, after the reference plugin changed the directory (so the
// index is stale): both succeed, and DEL removes the lease. It runs itself
// again in a new mount namespace to mount a small tmpfs there.
func TestFullDisk(t *testing.T) {
	if dir := os.Getenv(fullDiskEnv); dir != "" {
		fullDisk(t, dir)
		return
	}
	mnt := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFullDisk$", "-test.v")
	cmd.Env = append(os.Environ(), fullDiskEnv+"="+mnt, binDirEnv+"="+binDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if os.Getuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		skipOrFail(t, fmt.Sprintf("cannot make a mount namespace to mount a full file system in (%v)", err))
	}
	if err != nil {
		t.Fatalf("full-disk run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestFullDisk") {
		t.Fatalf("full-disk run did not pass:\n%s", out)
	}
	t.Logf("%s", out)
}

// fullDisk is TestFullDisk inside its mount namespace.
func fullDisk(t *testing.T, mnt string) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k,nr_inodes=64"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	netDir := filepath.Join(mnt, "full")
	ours := filepath.Join(binDir, "host-local")
	stdin := netConf("full", mnt, "10.64.0.0/24", "")
	for _, id := range []string{"a", "b"} {
		addAddr(ctx, t, invocation{bin: ours, id: id, ifname: "eth0", stdin: stdin})
	}
	// The reference plugin adds two leases: our index is stale and needs
	// two new entries, more than the stamp that reconciling removes frees.
	for addr, owner := range map[string]string{"10.64.0.9": "r", "10.64.0.10": "r2"} {
		if err := os.WriteFile(filepath.Join(netDir, addr), []byte(owner+"\r\neth0"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "probe"), nil, 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("creating a file on the full file system: %v, want ENOSPC", err)
	}
	for i, s := range []invocation{{command: "CHECK", id: "b"}, {command: "CHECK", id: "r"}, {command: "DEL", id: "a"}, {command: "DEL", id: "r"}, {command: "CHECK", id: "b"}} {
		s.bin, s.ifname, s.stdin = ours, "eth0", stdin
		_, errOut, err := invoke(ctx, s)
		if err != nil {
			t.Fatalf("%s %s on a full file system: %v (stderr %q)", s.command, s.id, err, errOut)
		}
		if i == 0 && !strings.Contains(string(errOut), "serving this call from a scan") {
			t.Errorf("CHECK with a stale index on a full file system did not say it served from a scan: stderr %q", errOut)
		}
	}
	if diff := cmp.Diff([]string{"10.64.0.10", "10.64.0.3"}, leaseFiles(t, netDir)); diff != "" {
		t.Errorf("leases after DEL of a and r (-want +got):\n%s", diff)
	}
	// DEL of a missing attachment is still success.
	if _, _, err := invoke(ctx, invocation{bin: ours, command: "DEL", id: "gone", ifname: "eth0", stdin: stdin}); err != nil {
		t.Errorf("DEL of an attachment without lease on a full file system: %v", err)
	}
}

// fill uses up the blocks, then the inodes, of the file system at dir.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	for i := 0; ; i++ {
		err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("inode-%d", i)), nil, 0o600)
		if errors.Is(err, unix.ENOSPC) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
