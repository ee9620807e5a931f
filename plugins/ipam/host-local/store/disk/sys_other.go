//go:build !linux

package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// fileLock is unavailable off Linux: the store needs flock(2) semantics
// shared with the reference plugin.
type fileLock struct{}

func errUnsupported() error {
	return fmt.Errorf("file lock: not supported on %s", runtime.GOOS)
}

func openLock(string) (*fileLock, error)     { return nil, errUnsupported() }
func (*fileLock) lock(context.Context) error { return errUnsupported() }
func (*fileLock) unlock() error              { return errUnsupported() }
func (*fileLock) close() error               { return nil }

func readSmall(path string) ([]byte, error) { return os.ReadFile(path) }

// dir is an open directory whose files are read by name.
type dir struct{ path string }

func openDir(path string) (*dir, error) { return &dir{path: path}, nil }

func (d *dir) names() ([]string, error) { return listNames(d.path) }

func (d *dir) read(name string) ([]byte, error) { return os.ReadFile(filepath.Join(d.path, name)) }
func (d *dir) close() error                     { return nil }
