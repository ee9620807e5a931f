package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// guestModules are loaded at boot in this order, each after the modules it
// depends on. crc32c_generic meets libcrc32c's soft dependency (nf_tables
// needs libcrc32c), which names an algorithm rather than a module.
var guestModules = []string{"ipvlan", "dummy", "veth", "macvlan", "8021q", "crc32c_generic", "nf_tables"}

// moduleParams are passed when a module loads: no dummy0 appears uninvited.
var moduleParams = map[string]string{"dummy": "numdummies=0"}

// hostBinaries are shipped with their libraries; busybox's applets of the
// same name are not linked over them.
var hostBinaries = []string{"/usr/sbin/ip", "/usr/sbin/nft"}

// guestPackages are built with CGO_ENABLED=0 into the guest: the init and
// the project's plugins.
var guestPackages = []string{"./internal/vmtest/vminit", "./plugins/main/...", "./plugins/ipam/..."}

// PluginLDFlags are the linker flags the plugins are built with, here and by
// the Makefile's PLUGIN_LDFLAGS (a test keeps the two equal). They make
// GODEBUG=disablethp=1 the binary's default: the Go heap then uses 4 KiB
// pages even where the kernel's transparent huge pages are "always" (Debian,
// RHEL). A plugin lives a few milliseconds and its heap is a few hundred
// KiB, so a 2 MiB huge page only costs it the zeroing of 2 MiB per fault:
// measured in the VM, 1-2 such faults cost a plugin 10-15 ms per call.
// When a Go release drops the setting or the variable, the flag is ignored.
const PluginLDFlags = "-X=runtime.godebugDefault=disablethp=1"

// buildInitramfs writes the guest's root file system to dst.
func buildInitramfs(ctx context.Context, cfg Config, k *Kernel, dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	c := newCPIOWriter(w)

	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/etc", "/opt/cni/bin"} {
		c.Dir(d)
	}
	c.Symlink("/var/run", "/run")
	c.File("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))

	if err := addBusybox(ctx, c); err != nil {
		return err
	}
	for _, f := range append(append([]string{}, hostBinaries...), cfg.Files...) {
		src, dst, ok := strings.Cut(f, "=")
		if !ok {
			dst = src
		}
		if err := addWithLibraries(ctx, c, src, dst); err != nil {
			return err
		}
	}
	if err := addModules(c, k); err != nil {
		return err
	}
	if err := addGuestBinaries(ctx, c, cfg); err != nil {
		return err
	}

	prog := filepath.Join(GuestDir, filepath.Base(cfg.Program))
	c.CopyFile(prog, cfg.Program)
	if err := writeRunSpec(c, cfg, prog); err != nil {
		return err
	}
	if cfg.Dir != "" {
		if err := addTree(c, filepath.Join(cfg.Dir, "testdata"), filepath.Join(GuestDir, "pkg", "testdata")); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func addBusybox(ctx context.Context, c *cpioWriter) error {
	c.CopyFile("/bin/busybox", "/bin/busybox")
	out, err := exec.CommandContext(ctx, "/bin/busybox", "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	shadowed := map[string]bool{}
	for _, b := range hostBinaries {
		shadowed[filepath.Base(b)] = true
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" || shadowed[filepath.Base(applet)] {
			continue
		}
		c.Symlink("/"+applet, "/bin/busybox")
	}
	return nil
}

// addWithLibraries ships the host file src at dst in the guest, the
// libraries it loads, and for a file in /usr/sbin (ip, nft) a link in
// /sbin so scripts find them first.
func addWithLibraries(ctx context.Context, c *cpioWriter, src, dst string) error {
	libs, err := sharedLibraries(ctx, src)
	if err != nil {
		return err
	}
	c.CopyFile(dst, src)
	for _, lib := range libs {
		c.CopyFile(lib, lib)
	}
	if strings.HasPrefix(dst, "/usr/sbin/") {
		c.Symlink("/sbin/"+filepath.Base(dst), dst)
	}
	return nil
}

func addModules(c *cpioWriter, k *Kernel) error {
	index, err := indexModules(k.Modules)
	if err != nil {
		return err
	}
	order, err := loadOrder(index, guestModules)
	if err != nil {
		return err
	}
	var list strings.Builder
	for _, file := range order {
		name := moduleName(file)
		guest := "/lib/modules/vmtest/" + name + ".ko"
		c.CopyFile(guest, file)
		fmt.Fprintf(&list, "%s %s\n", guest, moduleParams[name])
	}
	c.File("/lib/modules/vmtest/load.list", 0o644, []byte(list.String()))
	return nil
}

// addGuestBinaries builds the guest init and the plugins with CGO_ENABLED=0
// and ships them: the init as /init, the plugins in /opt/cni/bin.
func addGuestBinaries(ctx context.Context, c *cpioWriter, cfg Config) error {
	// Runners for several packages may build at once.
	lock, err := os.OpenFile(filepath.Join(cfg.CacheDir, "guest-bin.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock guest binaries: %w", err)
	}
	// Start empty so a removed plugin does not linger.
	out := filepath.Join(cfg.CacheDir, "guest-bin")
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	gobin := "go"
	if goroot := os.Getenv("GOROOT"); goroot != "" {
		gobin = filepath.Join(goroot, "bin", "go")
	}
	args := []string{"build", "-ldflags=" + PluginLDFlags, "-o", out + "/"}
	for _, pkg := range guestPackages {
		// A tree without plugins yet still boots.
		if _, err := os.Stat(filepath.Join(cfg.RepoRoot, strings.TrimSuffix(pkg, "/..."))); err == nil {
			args = append(args, pkg)
		}
	}
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir = cfg.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build guest binaries: %w: %s", err, msg)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := filepath.Join(out, e.Name())
		if e.Name() == "vminit" {
			c.CopyFile("/init", src)
			continue
		}
		c.CopyFile(filepath.Join("/opt/cni/bin", e.Name()), src)
	}
	return nil
}

// addTree copies a host directory tree into the guest, if it exists.
func addTree(c *cpioWriter, src, dst string) error {
	if _, err := os.Stat(src); os.IsNotExist(err) {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			c.Dir(target)
		case d.Type().IsRegular():
			c.CopyFile(target, p)
		}
		return nil
	})
}
