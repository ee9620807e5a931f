package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes one guest run.
type Config struct {
	// RepoRoot is the project's module root: the guest init and the plugin
	// binaries are built from it.
	RepoRoot string
	// CacheDir holds the unpacked kernel and the built guest binaries
	// (default RepoRoot/.cache/vmtest).
	CacheDir string
	// Program is the host path of a static binary to run in the guest, and
	// Args its arguments.
	Program string
	Args    []string
	// Dir is a host directory whose testdata subdirectory, if any, is copied
	// into the guest; the program runs in the guest's copy of Dir.
	Dir string
	// Env is added to the guest program's environment.
	Env []string
	// Files are host files placed at the same path in the guest, with the
	// shared libraries they load; "src=dst" places src at dst instead (the
	// guest mounts a tmpfs on /tmp, which hides anything shipped there).
	Files []string
	// Timeout bounds the whole run on the host side (default 30 minutes).
	Timeout time.Duration
	// KernelPackage is the Debian metapackage whose kernel the guest boots
	// (default DefaultKernel).
	KernelPackage string
	// MemoryMB and CPUs size the guest (defaults 2048 and 2).
	MemoryMB int
	CPUs     int
	// Stdout receives the guest program's output, "\r" stripped.
	Stdout io.Writer
	// Logf reports the runner's own progress.
	Logf func(format string, args ...any)
}

// Counts tallies the test results seen in the guest's output.
type Counts struct{ Passed, Failed, Skipped int }

// Result is the outcome of a guest run.
type Result struct {
	ExitCode int           // the guest program's exit status
	Kernel   string        // the kernel version booted
	Elapsed  time.Duration // host wall time of the boot and run
	Tests    Counts        // top-level and sub-tests reported by "--- PASS/FAIL/SKIP"
}

// ModuleRoot finds the directory holding go.mod at or above dir.
func ModuleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", errors.New("no go.mod at or above " + dir)
		}
	}
}

// GuestDir is where the program, its arguments and testdata live in the guest.
const GuestDir = "/vmtest"

// guestRun is what the host tells the guest init to run.
type guestRun struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// exitMarker is the line the guest init prints after the program exits.
var exitMarker = regexp.MustCompile(`^vmtest: exit status (-?\d+)$`)

var testResult = regexp.MustCompile(`^\x16?\s*--- (PASS|FAIL|SKIP): `)

// Run boots the kernel, runs cfg.Program in the guest and returns its exit
// status. An error means the run itself went wrong: no verdict from the
// guest, a timeout, a panic, or a mismatch between the marker and qemu's
// exit code.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.RepoRoot, ".cache", "vmtest")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.KernelPackage == "" {
		cfg.KernelPackage = DefaultKernel
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 2048
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	if err := ensureHostPackages(ctx, cfg.Logf); err != nil {
		return nil, err
	}
	kernel, err := ensureKernel(ctx, cfg.CacheDir, cfg.KernelPackage, cfg.Logf)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	initrd := filepath.Join(tmp, "initrd.cpio")
	if err := buildInitramfs(ctx, cfg, kernel, initrd); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	console := filepath.Join(tmp, "console.log")
	res := &Result{Kernel: kernel.Version}
	start := time.Now()
	qemuErr := boot(ctx, cfg, kernel, initrd, console, res)
	res.Elapsed = time.Since(start)
	if qemuErr != nil {
		if log, err := os.ReadFile(console); err == nil {
			cfg.Logf("vmtest: kernel console (last lines):\n%s", lastLines(log, 150))
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("guest did not finish within %s: %w", cfg.Timeout, qemuErr)
		}
		return res, qemuErr
	}
	return res, nil
}

// kernelCmdline is the guest kernel's command line. tsc=reliable: TCG's
// CPU is AMD-flavoured without an invariant-TSC bit, so Debian's 6.1
// kernels mark the TSC unsynchronized between vCPUs and keep time with the
// emulated HPET, whose every read is a system call (the vDSO cannot read
// it) and an emulated device access, about 5 µs against 0.4 µs; 6.12
// takes the TSC by itself. qemu derives every vCPU's TSC from one host
// counter under a lock, never going backwards, which is what the flag
// asserts (TestGuestClockIsTSC checks it): clock reads then cost what they
// cost on hardware, where the kernel keeps time with the TSC.
const kernelCmdline = "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic tsc=reliable"

func boot(ctx context.Context, cfg Config, k *Kernel, initrd, console string, res *Result) error {
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-machine", "q35", "-cpu", "max",
		"-m", strconv.Itoa(cfg.MemoryMB), "-smp", strconv.Itoa(cfg.CPUs),
		"-kernel", k.Image, "-initrd", initrd,
		"-append", kernelCmdline,
		"-nodefaults", "-display", "none", "-no-reboot", "-nic", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-serial", "file:"+console, // ttyS0: kernel console
		"-serial", "stdio", // ttyS1: the program's output
	)
	cmd.Stdin = nil // /dev/null: CI has no terminal
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	marker := -1
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := strings.ReplaceAll(sc.Text(), "\r", "")
		if m := exitMarker.FindStringSubmatch(line); m != nil {
			marker, _ = strconv.Atoi(m[1])
			continue
		}
		if m := testResult.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "PASS":
				res.Tests.Passed++
			case "FAIL":
				res.Tests.Failed++
			case "SKIP":
				res.Tests.Skipped++
			}
		}
		fmt.Fprintln(cfg.Stdout, line)
	}
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// isa-debug-exit makes qemu exit with (v<<1)|1 where the guest wrote
	// v = status+1; qemu's own failures exit 1 and a panic or plain
	// power-off exits 0, so neither can pass for a verdict.
	qemuStatus := 0
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		qemuStatus = ee.ExitCode()
	} else if waitErr != nil {
		return fmt.Errorf("qemu: %w", waitErr)
	}
	if qemuStatus < 3 || qemuStatus%2 == 0 {
		return fmt.Errorf("guest gave no exit status (qemu exited %d): kernel panic, crash or power-off", qemuStatus)
	}
	status := (qemuStatus >> 1) - 1
	if marker < 0 {
		return fmt.Errorf("guest exit status %d arrived without the exit marker line", status)
	}
	if min(marker, 126) != status {
		return fmt.Errorf("guest exit marker says %d but qemu reported %d", marker, status)
	}
	res.ExitCode = marker
	return nil
}

func writeRunSpec(c *cpioWriter, cfg Config, guestProg string) error {
	dir := filepath.Join(GuestDir, "pkg")
	env := append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"CNI_PATH=/opt/cni/bin",
		"VMTEST=1",
	}, cfg.Env...)
	spec, err := json.Marshal(guestRun{Args: append([]string{guestProg}, cfg.Args...), Env: env, Dir: dir})
	if err != nil {
		return err
	}
	c.File(filepath.Join(GuestDir, "run.json"), 0o644, spec)
	c.Dir(dir)
	return nil
}
