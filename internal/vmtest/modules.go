package vmtest

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// moduleName is the kernel's name for a module file: the base name without
// ".ko" (or ".ko.xz"), with dashes as underscores.
func moduleName(file string) string {
	base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".xz"), ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// isModule reports whether p names a module file: bookworm's 6.1 kernels
// ship .ko files, its 6.12 kernels .ko.xz.
func isModule(p string) bool { return strings.HasSuffix(p, ".ko") || strings.HasSuffix(p, ".ko.xz") }

// uncompressed returns the .ko file of module file, unpacking a .ko.xz
// beside it (in the kernel's cache directory) with xz the first time.
func uncompressed(file string) (string, error) {
	ko, ok := strings.CutSuffix(file, ".xz")
	if !ok {
		return file, nil
	}
	if _, err := os.Stat(ko); err == nil {
		return ko, nil
	}
	// Test binaries of several packages build their initramfs at once from
	// a fresh cache: each unpacks to a file of its own and renames it into
	// place, and every rename leaves the same bytes.
	out, err := os.CreateTemp(filepath.Dir(ko), filepath.Base(ko)+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := out.Name()
	cmd := exec.Command("xz", "-dc", file)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("xz -dc %s: %w: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp, ko); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return ko, nil
}

// builtin marks, in a module index, a module compiled into the kernel: it
// has no file and nothing to load.
const builtin = ""

// indexModules maps every module name under dir to its .ko file, and the
// modules that the kernel has built in (modules.builtin) to builtin. Flavours
// differ here: Debian's cloud kernel builds crc32c_generic in, the generic
// one ships it as a module.
func indexModules(dir string) (map[string]string, error) {
	index := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			index[moduleName(line)] = builtin
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read built-in kernel modules: %w", err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isModule(p) {
			if _, seen := index[moduleName(p)]; !seen || strings.HasSuffix(p, ".ko") {
				index[moduleName(p)] = p // an unpacked .ko over its .ko.xz
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules in %s: %w", dir, err)
	}
	return index, nil
}

// moduleDeps reads the "depends=" entry of a module's .modinfo section.
func moduleDeps(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", file)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", file, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if deps, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(deps) == 0 {
				return nil, nil
			}
			return strings.Split(string(deps), ","), nil
		}
	}
	return nil, nil
}

// loadOrder returns the .ko files for the wanted modules and everything they
// depend on, each after its dependencies, as the kernel must load them.
func loadOrder(index map[string]string, wanted []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		file, ok := index[name]
		if !ok {
			return fmt.Errorf("kernel module %s not found", name)
		}
		if file == builtin {
			state[name] = 2
			return nil
		}
		state[name] = 1
		file, err := uncompressed(file)
		if err != nil {
			return err
		}
		deps, err := moduleDeps(file)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(moduleName(d)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		state[name] = 2
		order = append(order, file)
		return nil
	}
	for _, name := range wanted {
		if err := visit(moduleName(name)); err != nil {
			return nil, err
		}
	}
	return order, nil
}
