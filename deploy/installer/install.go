package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// action is what install did with one file.
type action string

// The actions, as printed.
const (
	installed action = "installed" // the destination had no such file
	replaced  action = "replaced"  // the destination's file differed in content or mode
	unchanged action = "unchanged" // the destination's file was identical already
)

// binMode is the mode of every installed file.
const binMode fs.FileMode = 0o755

// tempPrefix starts the name of the temporary files written in the
// destination directory. A dot keeps them out of a CNI runtime's way
// (no network configuration names a plugin starting with a dot), and
// install removes those a killed run left behind.
const tempPrefix = ".ipvlan-cni-installer-"

// install copies every regular file of src (symbolic links followed) into
// dst, which must exist, and calls report once per file, in name order,
// with what it did. A file whose content and mode (0755) are already
// those of the source is left alone; any other is written to a temporary
// file in dst, synced, made 0755 and renamed over the destination: a
// process running the old file, or a runtime exec'ing the name at that
// moment, sees the old file or the new one, whole, never a partial one.
// On failure the temporary file is removed and the error names the file.
func install(src, dst string, report func(name string, a action)) error {
	names, err := sourceFiles(src)
	if err != nil {
		return err
	}
	if info, err := os.Stat(dst); err != nil {
		return fmt.Errorf("destination: %w", err)
	} else if !info.IsDir() {
		return fmt.Errorf("destination %s is not a directory", dst)
	}
	if err := removeStaleTemps(dst); err != nil {
		return err
	}
	for _, name := range names {
		a, err := installFile(filepath.Join(src, name), dst, name)
		if err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
		report(name, a)
	}
	return syncDir(dst)
}

// sourceFiles lists the names of the regular files in src, sorted.
func sourceFiles(src string) ([]string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	var names []string
	for _, e := range entries {
		info, err := os.Stat(filepath.Join(src, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if info.Mode().IsRegular() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("source %s holds no file to install", src)
	}
	sort.Strings(names)
	return names, nil
}

// removeStaleTemps removes the temporary files of an earlier run that was
// killed between creating one and renaming it.
func removeStaleTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove a stale temporary file: %w", err)
			}
		}
	}
	return nil
}

// installFile makes dir/name a copy of srcPath with mode 0755.
func installFile(srcPath, dir, name string) (action, error) {
	dstPath := filepath.Join(dir, name)
	a := replaced
	old, err := os.Lstat(dstPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		a = installed
	case err != nil:
		return "", err
	case old.Mode().IsRegular() && old.Mode().Perm() == binMode:
		same, err := sameContent(srcPath, dstPath)
		if err != nil {
			return "", err
		}
		if same {
			return unchanged, nil
		}
	}
	// Anything else, a symbolic link included, is replaced: rename swaps
	// the directory entry, whatever it pointed to.
	if err := replaceFile(srcPath, dir, dstPath); err != nil {
		return "", err
	}
	return a, nil
}

// sameContent reports whether the files at a and b hold the same bytes.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ia, err := fa.Stat()
	if err != nil {
		return false, err
	}
	ib, err := fb.Stat()
	if err != nil {
		return false, err
	}
	if ia.Size() != ib.Size() {
		return false, nil
	}
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		switch {
		case errA != nil && !endA:
			return false, fmt.Errorf("read %s: %w", a, errA)
		case errB != nil && !endB:
			return false, fmt.Errorf("read %s: %w", b, errB)
		case endA || endB:
			return endA && endB, nil
		}
	}
}

// replaceFile writes a copy of srcPath to a temporary file in dir (the
// destination's file system, so that the rename is atomic), syncs it,
// makes it 0755 and renames it to dstPath. The temporary file is removed
// when any step fails.
func replaceFile(srcPath, dir, dstPath string) (err error) {
	in, err := os.Open(srcPath)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, tempPrefix+filepath.Base(dstPath)+"-*")
	if err != nil {
		return fmt.Errorf("create a temporary file: %w", err)
	}
	closed := false
	defer func() {
		if err == nil {
			return
		}
		if !closed {
			tmp.Close()
		}
		os.Remove(tmp.Name())
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return fmt.Errorf("copy to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(binMode); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	closed = true
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dstPath)
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync destination: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync destination: %w", err)
	}
	return nil
}
