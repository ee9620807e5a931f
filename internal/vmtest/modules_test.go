package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/lib/modules/x/kernel/net/8021q/8021q.ko": "8021q",
		"crc32c-intel.ko":                          "crc32c_intel",
		"kernel/drivers/net/ipvlan/ipvlan.ko.xz":   "ipvlan",
		"nf_tables":                                "nf_tables",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadOrderMissingModule(t *testing.T) {
	if _, err := loadOrder(map[string]string{}, []string{"ipvlan"}); err == nil {
		t.Error("loadOrder with an empty index succeeded, want an error naming ipvlan")
	}
}

// A module the kernel has built in is found and has nothing to load.
func TestLoadOrderBuiltinModule(t *testing.T) {
	dir := t.TempDir()
	builtins := "kernel/crypto/crc32c_generic.ko\nkernel/net/ipv4/tcp_cubic.ko\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtins), 0o644); err != nil {
		t.Fatal(err)
	}
	index, err := indexModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := loadOrder(index, []string{"crc32c_generic"})
	if err != nil || len(order) != 0 {
		t.Errorf("loadOrder(crc32c_generic built in) = %q, %v; want nothing to load", order, err)
	}
	if _, err := loadOrder(index, []string{"ipvlan"}); err == nil {
		t.Error("loadOrder(ipvlan) succeeded with ipvlan neither a file nor built in")
	}
}

// A .ko.xz (6.12's modules) is unpacked beside itself once, and the .ko is
// what the index gives afterwards.
func TestUncompressedModule(t *testing.T) {
	dir := t.TempDir()
	ko := filepath.Join(dir, "m.ko")
	if err := os.WriteFile(ko, []byte("module bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xz", ko).CombinedOutput(); err != nil { // leaves m.ko.xz only
		t.Fatalf("xz: %v: %s", err, out)
	}
	index, err := indexModules(dir)
	if err != nil || index["m"] != ko+".xz" {
		t.Fatalf("index = %v, %v; want m at %s.xz", index, err, ko)
	}
	got, err := uncompressed(ko + ".xz")
	if err != nil || got != ko {
		t.Fatalf("uncompressed = %q, %v; want %q", got, err, ko)
	}
	if b, err := os.ReadFile(ko); err != nil || string(b) != "module bytes" {
		t.Errorf("unpacked module = %q, %v; want the original bytes", b, err)
	}
	if index, _ := indexModules(dir); index["m"] != ko {
		t.Errorf("index after unpacking = %v, want m at %s", index, ko)
	}
}

// Test binaries of several packages unpack the same module at once on a
// fresh cache: every one of them gets the module, and no temp file stays.
func TestUncompressedModuleConcurrently(t *testing.T) {
	dir := t.TempDir()
	ko := filepath.Join(dir, "m.ko")
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if err := os.WriteFile(ko, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xz", ko).CombinedOutput(); err != nil {
		t.Fatalf("xz: %v: %s", err, out)
	}
	const callers = 8
	errs := make(chan error, callers)
	for range callers {
		go func() {
			got, err := uncompressed(ko + ".xz")
			if err == nil && got != ko {
				err = fmt.Errorf("uncompressed = %q, want %q", got, ko)
			}
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if b, err := os.ReadFile(ko); err != nil || string(b) != string(want) {
		t.Errorf("unpacked module: %d bytes, %v; want the original %d", len(b), err, len(want))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}
