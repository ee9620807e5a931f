package vmtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/lib/modules/x/kernel/net/8021q/8021q.ko": "8021q",
		"crc32c-intel.ko":                          "crc32c_intel",
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
