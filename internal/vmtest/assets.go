package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// hostPackages are the Debian packages the runner needs on the host, each
// with a file that shows it is installed.
var hostPackages = []struct{ pkg, file string }{
	{"qemu-system-x86", "/usr/bin/qemu-system-x86_64"},
	{"busybox-static", "/bin/busybox"},
	{"iproute2", "/usr/sbin/ip"},
	{"nftables", "/usr/sbin/nft"},
	{"xz-utils", "/usr/bin/xz"}, // 6.12's modules are .ko.xz
}

// DefaultKernel is the Debian package whose dependency names the kernel to
// boot unless Config.KernelPackage names another: Debian's generic kernel.
// "linux-image-cloud-amd64", the flavour Debian's cloud images boot, is the
// other one the project runs on (built without wireless support).
const DefaultKernel = "linux-image-amd64"

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Version string // e.g. 6.1.0-56-amd64
	Image   string // path of vmlinuz
	Modules string // path of lib/modules/<version>
}

// ensureHostPackages installs the missing host packages with apt-get.
func ensureHostPackages(ctx context.Context, logf func(string, ...any)) error {
	var missing []string
	for _, p := range hostPackages {
		if _, err := os.Stat(p.file); err != nil {
			missing = append(missing, p.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	logf("vmtest: installing %s", strings.Join(missing, " "))
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if _, err := aptGet(ctx, "", args...); err != nil {
		// A fresh machine may have no package lists yet.
		if _, uerr := aptGet(ctx, "", "update"); uerr != nil {
			return fmt.Errorf("apt-get update: %w", uerr)
		}
		if _, err := aptGet(ctx, "", args...); err != nil {
			return fmt.Errorf("apt-get install %s: %w", strings.Join(missing, " "), err)
		}
	}
	return nil
}

func aptGet(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-q"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, lastLines(out, 5))
	}
	return out, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var kernelDep = regexp.MustCompile(`(?m)^Depends:.*?\b(linux-image-[0-9][^ ,]*)`)

// currentKernelPackage asks apt which kernel package the metapackage meta
// (linux-image-amd64, say) depends on now, refreshing the package lists once
// if apt knows none.
func currentKernelPackage(ctx context.Context, meta string) (string, error) {
	show := func() (string, error) {
		out, err := exec.CommandContext(ctx, "apt-cache", "show", meta).Output()
		if err != nil {
			return "", fmt.Errorf("apt-cache show %s: %w", meta, err)
		}
		// apt-cache lists the newest version first.
		m := kernelDep.FindSubmatch(out)
		if m == nil {
			return "", fmt.Errorf("no kernel dependency in apt-cache show %s", meta)
		}
		return string(m[1]), nil
	}
	pkg, err := show()
	if err == nil {
		return pkg, nil
	}
	if _, uerr := aptGet(ctx, "", "update"); uerr != nil {
		return "", errors.Join(err, uerr)
	}
	return show()
}

// ensureKernel returns the kernel the metapackage meta depends on now,
// downloading and unpacking its package into cacheDir unless it is already
// there.
func ensureKernel(ctx context.Context, cacheDir, meta string, logf func(string, ...any)) (*Kernel, error) {
	pkg, err := currentKernelPackage(ctx, meta)
	if err != nil {
		return nil, err
	}
	version := strings.TrimPrefix(pkg, "linux-image-")
	dir := filepath.Join(cacheDir, "kernel", version)
	k := &Kernel{
		Version: version,
		Image:   filepath.Join(dir, "boot", "vmlinuz-"+version),
		Modules: filepath.Join(dir, "lib", "modules", version),
	}
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return k, nil
	}

	// Several runners may start at once: one downloads, the others wait.
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, "kernel.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock kernel cache: %w", err)
	}
	if _, err := os.Stat(done); err == nil {
		return k, nil
	}

	logf("vmtest: downloading %s", pkg)
	dl, err := os.MkdirTemp(cacheDir, "download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dl)
	// apt drops privileges to _apt for downloads; let it write here.
	_ = os.Chmod(dl, 0o777)
	if _, err := aptGet(ctx, dl, "download", pkg); err != nil {
		if _, uerr := aptGet(ctx, "", "update"); uerr != nil {
			return nil, fmt.Errorf("apt-get download %s: %w", pkg, errors.Join(err, uerr))
		}
		if _, err := aptGet(ctx, dl, "download", pkg); err != nil {
			return nil, fmt.Errorf("apt-get download %s: %w", pkg, err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d packages", pkg, len(debs))
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], dir)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("unpack %s: %w: %s", pkg, err, stderr.String())
	}
	for _, p := range []string{k.Image, k.Modules} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("kernel package %s: %w", pkg, err)
		}
	}
	if err := os.WriteFile(done, []byte(pkg+"\n"), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// sharedLibraries lists the libraries a dynamically linked host binary
// loads, the dynamic loader included, as ldd reports them.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		// ldd exits non-zero for static binaries.
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && bytes.Contains(ee.Stderr, []byte("not a dynamic executable")) {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}
