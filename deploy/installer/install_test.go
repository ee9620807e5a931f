package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// fileState is what a test compares before and after an install.
type fileState struct {
	inode   uint64
	mode    os.FileMode
	modTime time.Time
	content string
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{
		inode:   info.Sys().(*syscall.Stat_t).Ino,
		mode:    info.Mode(),
		modTime: info.ModTime(),
		content: string(b),
	}
}

// tempFiles lists the installer's temporary files left in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			left = append(left, e.Name())
		}
	}
	return left
}

type reported struct {
	Name   string
	Action action
}

func installReporting(src, dst string) ([]reported, error) {
	var got []reported
	err := install(src, dst, func(name string, a action) { got = append(got, reported{name, a}) })
	return got, err
}

// TestInstallFile covers each state the destination can be in for one
// plugin, and checks the file afterwards: content, mode, and whether it
// is still the same inode (left alone) or a new one (renamed over).
func TestInstallFile(t *testing.T) {
	const newContent = "new plugin\n"
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	tests := []struct {
		name  string
		setup func(t *testing.T, dst string) // prepares dst/ipvlan
		want  action
		// sameInode: dst/ipvlan must be the file setup left, untouched.
		sameInode bool
	}{
		{
			name:  "absent",
			setup: func(t *testing.T, dst string) {},
			want:  installed,
		},
		{
			name: "identical",
			setup: func(t *testing.T, dst string) {
				writeFile(t, filepath.Join(dst, "ipvlan"), newContent, 0o755)
			},
			want:      unchanged,
			sameInode: true,
		},
		{
			name: "different content",
			setup: func(t *testing.T, dst string) {
				writeFile(t, filepath.Join(dst, "ipvlan"), "old plugin\n", 0o755)
			},
			want: replaced,
		},
		{
			name: "same size, one byte differs at the end",
			setup: func(t *testing.T, dst string) {
				writeFile(t, filepath.Join(dst, "ipvlan"), newContent[:len(newContent)-1]+"!", 0o755)
			},
			want: replaced,
		},
		{
			name: "identical content, not executable",
			setup: func(t *testing.T, dst string) {
				writeFile(t, filepath.Join(dst, "ipvlan"), newContent, 0o644)
			},
			want: replaced,
		},
		{
			name: "symbolic link to an identical file",
			setup: func(t *testing.T, dst string) {
				target := filepath.Join(t.TempDir(), "ipvlan")
				writeFile(t, target, newContent, 0o755)
				if err := os.Symlink(target, filepath.Join(dst, "ipvlan")); err != nil {
					t.Fatal(err)
				}
			},
			want: replaced,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			writeFile(t, filepath.Join(src, "ipvlan"), newContent, 0o644)
			path := filepath.Join(dst, "ipvlan")
			tt.setup(t, dst)
			var before fileState
			var oldFile *os.File
			if _, err := os.Lstat(path); err == nil {
				// An old mtime, so that a rewrite in the same second shows.
				if err := os.Chtimes(path, old, old); err != nil {
					t.Fatal(err)
				}
				before = stateOf(t, path)
				// Held open: a replacement by rename leaves it readable, whole.
				if oldFile, err = os.Open(path); err != nil {
					t.Fatal(err)
				}
				defer oldFile.Close()
			}

			got, err := installReporting(src, dst)
			if err != nil {
				t.Fatalf("install: %v", err)
			}
			if diff := cmp.Diff([]reported{{"ipvlan", tt.want}}, got); diff != "" {
				t.Errorf("reported (-want +got):\n%s", diff)
			}
			after := stateOf(t, path)
			if after.content != newContent {
				t.Errorf("content %q, want %q", after.content, newContent)
			}
			if after.mode != 0o755 {
				t.Errorf("mode %v, want -rwxr-xr-x", after.mode)
			}
			if tt.sameInode {
				if diff := cmp.Diff(before, after, cmp.AllowUnexported(fileState{})); diff != "" {
					t.Errorf("file touched (-before +after):\n%s", diff)
				}
			} else if oldFile != nil {
				if after.inode == before.inode {
					t.Errorf("inode %d unchanged: the file was rewritten in place, not renamed over", after.inode)
				}
				b := make([]byte, 100)
				n, _ := oldFile.ReadAt(b, 0)
				if string(b[:n]) != before.content {
					t.Errorf("the old file, held open, reads %q, want %q", b[:n], before.content)
				}
			}
			if left := tempFiles(t, dst); left != nil {
				t.Errorf("temporary files left: %q", left)
			}
		})
	}
}

// TestInstallReportsEachFile installs a source directory of several
// files: regular files and a symbolic link are installed in name order,
// a directory is skipped, and a second run changes nothing.
func TestInstallReportsEachFile(t *testing.T) {
	src, dst, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "ipvlan"), "ipvlan v2", 0o755)
	writeFile(t, filepath.Join(src, "host-local"), "host-local v2", 0o755)
	writeFile(t, filepath.Join(elsewhere, "dhcp"), "dhcp v2", 0o755)
	if err := os.Symlink(filepath.Join(elsewhere, "dhcp"), filepath.Join(src, "dhcp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dst, "ipvlan"), "ipvlan v1", 0o755)
	writeFile(t, filepath.Join(dst, "bridge"), "someone else's", 0o755)

	got, err := installReporting(src, dst)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	want := []reported{{"dhcp", installed}, {"host-local", installed}, {"ipvlan", replaced}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first run reported (-want +got):\n%s", diff)
	}
	for name, content := range map[string]string{"ipvlan": "ipvlan v2", "host-local": "host-local v2", "dhcp": "dhcp v2", "bridge": "someone else's"} {
		if got := stateOf(t, filepath.Join(dst, name)); got.content != content || got.mode != 0o755 {
			t.Errorf("%s: %q %v, want %q -rwxr-xr-x", name, got.content, got.mode, content)
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "subdir")); err == nil {
		t.Errorf("the source's directory was installed")
	}

	got, err = installReporting(src, dst)
	if err != nil {
		t.Fatalf("second install: %v", err)
	}
	want = []reported{{"dhcp", unchanged}, {"host-local", unchanged}, {"ipvlan", unchanged}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("second run reported (-want +got):\n%s", diff)
	}
}

// TestInstallFails checks that a failure is an error naming what failed
// and leaves no temporary file.
func TestInstallFails(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the source and destination directories.
		setup   func(t *testing.T) (src, dst string)
		wantErr string
		// wantReported: the files installed before the failure.
		wantReported []reported
	}{
		{
			name: "destination missing",
			setup: func(t *testing.T) (string, string) {
				src := t.TempDir()
				writeFile(t, filepath.Join(src, "ipvlan"), "x", 0o755)
				return src, filepath.Join(t.TempDir(), "missing")
			},
			wantErr: "destination: stat ",
		},
		{
			name: "destination is a file",
			setup: func(t *testing.T) (string, string) {
				src := t.TempDir()
				writeFile(t, filepath.Join(src, "ipvlan"), "x", 0o755)
				dst := filepath.Join(t.TempDir(), "file")
				writeFile(t, dst, "", 0o644)
				return src, dst
			},
			wantErr: "is not a directory",
		},
		{
			name: "source missing",
			setup: func(t *testing.T) (string, string) {
				return filepath.Join(t.TempDir(), "missing"), t.TempDir()
			},
			wantErr: "source: open ",
		},
		{
			name: "source empty",
			setup: func(t *testing.T) (string, string) {
				return t.TempDir(), t.TempDir()
			},
			wantErr: "holds no file to install",
		},
		{
			name: "destination name taken by a directory",
			setup: func(t *testing.T) (string, string) {
				src, dst := t.TempDir(), t.TempDir()
				writeFile(t, filepath.Join(src, "host-local"), "host-local", 0o755)
				writeFile(t, filepath.Join(src, "ipvlan"), "ipvlan", 0o755)
				if err := os.MkdirAll(filepath.Join(dst, "ipvlan", "inside"), 0o755); err != nil {
					t.Fatal(err)
				}
				return src, dst
			},
			wantErr:      "install ipvlan: rename ",
			wantReported: []reported{{"host-local", installed}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := tt.setup(t)
			got, err := installReporting(src, dst)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("install: error %v, want one containing %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantReported, got); diff != "" {
				t.Errorf("reported (-want +got):\n%s", diff)
			}
			if info, err := os.Stat(dst); err == nil && info.IsDir() {
				if left := tempFiles(t, dst); left != nil {
					t.Errorf("temporary files left: %q", left)
				}
			}
		})
	}
}

// TestInstallRemovesStaleTemps: a temporary file that a killed run left
// is removed by the next one.
func TestInstallRemovesStaleTemps(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "ipvlan"), "ipvlan", 0o755)
	writeFile(t, filepath.Join(dst, tempPrefix+"ipvlan-123"), "half a plugin", 0o600)
	if _, err := installReporting(src, dst); err != nil {
		t.Fatalf("install: %v", err)
	}
	if left := tempFiles(t, dst); left != nil {
		t.Errorf("temporary files left: %q", left)
	}
}
