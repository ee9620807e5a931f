package vmtest

import (
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes an uncompressed "newc" cpio archive, the format the
// kernel unpacks as an initramfs. Directories are created on demand, so the
// caller adds only files and links.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
)

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	c.ino++
	nameSize := len(name) + 1
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, nameSize, 0)
	_, c.err = io.WriteString(c.w, hdr+name+"\x00"+pad(len(hdr)+nameSize))
}

func (c *cpioWriter) body(data []byte) {
	if c.err != nil {
		return
	}
	if _, c.err = c.w.Write(data); c.err == nil {
		_, c.err = io.WriteString(c.w, pad(len(data)))
	}
}

// pad returns the NULs that align n bytes to the archive's 4-byte boundary.
func pad(n int) string {
	return strings.Repeat("\x00", (4-n%4)%4)
}

func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// Dir adds a directory and its parents.
func (c *cpioWriter) Dir(name string) {
	name = clean(name)
	if c.dirs[name] {
		return
	}
	c.Dir(path.Dir(name))
	c.dirs[name] = true
	c.header(name, modeDir|0o755, 0)
}

// File adds a regular file with the given permission bits.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	name = clean(name)
	c.Dir(path.Dir(name))
	c.header(name, modeFile|perm, len(data))
	c.body(data)
}

// CopyFile adds the host file src (symlinks followed) as name.
func (c *cpioWriter) CopyFile(name, src string) {
	if c.err != nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		c.err = err
		return
	}
	st, err := os.Stat(src)
	if err != nil {
		c.err = err
		return
	}
	c.File(name, uint32(st.Mode().Perm()), data)
}

// Symlink adds a symbolic link name pointing at target.
func (c *cpioWriter) Symlink(name, target string) {
	name = clean(name)
	c.Dir(path.Dir(name))
	c.header(name, modeSymlink|0o777, len(target))
	c.body([]byte(target))
}

// Close writes the trailer and reports the first error met.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	return c.err
}
