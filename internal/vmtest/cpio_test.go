package vmtest

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type cpioEntry struct {
	Name string
	Mode uint32
	Data string
}

// readNewc parses an uncompressed newc archive the way the kernel does.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, nameSize := uint32(field(1)), field(6), field(11)
		name := string(b[off+110 : off+110+nameSize-1])
		dataOff := align(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{name, mode, string(b[dataOff : dataOff+size])})
		off = align(dataOff + size)
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.File("/opt/cni/bin/ipvlan", 0o755, []byte("plugin"))
	c.Symlink("/bin/sh", "/bin/busybox")
	c.Dir("/opt/cni") // already there: not written twice
	c.File("odd", 0o644, []byte("12345"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want := []cpioEntry{
		{"opt", modeDir | 0o755, ""},
		{"opt/cni", modeDir | 0o755, ""},
		{"opt/cni/bin", modeDir | 0o755, ""},
		{"opt/cni/bin/ipvlan", modeFile | 0o755, "plugin"},
		{"bin", modeDir | 0o755, ""},
		{"bin/sh", modeSymlink | 0o777, "/bin/busybox"},
		{"odd", modeFile | 0o644, "12345"},
	}
	if diff := cmp.Diff(want, readNewc(t, buf.Bytes())); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
}
