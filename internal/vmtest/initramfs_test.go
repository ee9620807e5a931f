package vmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Makefile builds the plugins users install, this package the ones the
// tests run: both with the same linker flags.
func TestMakefileBuildsPluginsLikeTheGuest(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "PLUGIN_LDFLAGS := "
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			if v != PluginLDFlags {
				t.Fatalf("Makefile: %s%s, want %s%s", prefix, v, prefix, PluginLDFlags)
			}
			return
		}
	}
	t.Fatalf("Makefile: no line starting with %q", prefix)
}
