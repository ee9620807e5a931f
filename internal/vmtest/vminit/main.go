//go:build linux

// Command vminit is the init (PID 1) of the vmtest guest. It mounts the
// kernel file systems, loads the kernel modules listed by the host in
// dependency order, brings lo up, runs the program described in
// /vmtest/run.json with its output on the second serial port, prints the
// exit marker and hands the exit status to qemu's isa-debug-exit device.
// It never returns: returning from PID 1 panics the kernel.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// output is the serial port the host reads the program's output from.
const output = "/dev/ttyS1"

type run struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

func main() {
	// Until devtmpfs is mounted only the kernel's /dev/console exists.
	out := os.Stdout
	status := 125
	if err := mountAll(); err != nil {
		fmt.Fprintf(out, "vminit: %v\n", err)
		exit(status)
	}
	if f, err := os.OpenFile(output, os.O_WRONLY, 0); err == nil {
		out = f
	}
	if err := setup(out); err != nil {
		fmt.Fprintf(out, "vminit: %v\n", err)
	} else {
		status = runProgram(out)
	}
	// The leading newline ends a last line the program left open.
	fmt.Fprintf(out, "\nvmtest: exit status %d\n", status)
	// Wait until the UART has sent everything before qemu exits.
	_ = unix.IoctlSetInt(int(out.Fd()), unix.TCSBRK, 1)
	exit(status)
}

// mountAll mounts what a container host's init mounts before anything
// else. cgroup2 is among them: a Go program reads /proc/self/mountinfo at
// start up to the cgroup2 line, so without it every process would read
// past every netns bind mount the tests add, which no real host does.
func mountAll() error {
	mounts := []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/dev/shm", "tmpfs"}, // POSIX shared memory: Podman's locks
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

func setup(out *os.File) error {
	// A raw port: "\n" is not turned into "\r\n".
	if t, err := unix.IoctlGetTermios(int(out.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
		_ = unix.IoctlSetTermios(int(out.Fd()), unix.TCSETS, t)
	}
	for _, d := range []string{"/run/netns", "/tmp", "/var/lib/cni"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := loadModules("/lib/modules/vmtest/load.list"); err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("look up lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

func loadModules(list string) error {
	f, err := os.Open(list)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		path, params, _ := strings.Cut(sc.Text(), " ")
		if path == "" {
			continue
		}
		if err := loadModule(path, params); err != nil {
			return err
		}
	}
	return sc.Err()
}

func loadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

func runProgram(out *os.File) int {
	data, err := os.ReadFile("/vmtest/run.json")
	if err != nil {
		fmt.Fprintf(out, "vminit: %v\n", err)
		return 125
	}
	var r run
	if err := json.Unmarshal(data, &r); err != nil || len(r.Args) == 0 {
		fmt.Fprintf(out, "vminit: bad run.json: %v\n", err)
		return 125
	}
	cmd := exec.Command(r.Args[0], r.Args[1:]...)
	cmd.Env = r.Env
	cmd.Dir = r.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	default:
		fmt.Fprintf(out, "vminit: run %s: %v\n", r.Args[0], err)
		return 125
	}
}

// debugExitPort is the I/O port of qemu's isa-debug-exit device.
const debugExitPort = 0xf4

// exit reports status through isa-debug-exit (qemu then exits with
// ((status+1)<<1)|1), through /dev/port where the kernel has it and
// directly otherwise, and powers off if that device is missing.
func exit(status int) {
	v := byte(min(status, 126) + 1)
	if port, err := os.OpenFile("/dev/port", os.O_WRONLY, 0); err == nil {
		_, _ = port.WriteAt([]byte{v}, debugExitPort)
		port.Close()
	} else if err := writePort(debugExitPort, v); err != nil {
		fmt.Fprintf(os.Stderr, "vminit: isa-debug-exit: %v\n", err)
	}
	unix.Sync()
	for {
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
}
