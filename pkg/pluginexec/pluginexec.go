// Package pluginexec runs a delegated CNI plugin, typically an IPAM plugin,
// as a child process: found by name in CNI_PATH, given the caller's
// environment with CNI_COMMAND set to the verb and the network
// configuration on stdin, answering with a result or a CNI error.
//
// It does what the cni library's invoke package does for delegation,
// without invoke's dependencies (tracing, HTTP), whose initialisation
// every plugin start would pay for. It needs nothing but the right to run
// the plugin; the child inherits the calling thread's network namespace.
package pluginexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"
)

// Find returns the path of the plugin called name in the directories of
// cniPath (a CNI_PATH value). name must be a plain file name.
func Find(name, cniPath string) (string, error) {
	if name == "" || strings.ContainsRune(name, os.PathSeparator) {
		return "", fmt.Errorf("plugin name %q is not a plain file name", name)
	}
	dirs := filepath.SplitList(cniPath)
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("plugin %q not found in CNI_PATH %q", name, cniPath)
}

// Run runs plugin (a name looked up in $CNI_PATH) for verb with stdin and
// returns what it printed. A plugin that fails with a CNI error on stdout
// yields that *types.Error, code and all.
func Run(ctx context.Context, plugin, verb string, stdin []byte) ([]byte, error) {
	path, err := Find(plugin, os.Getenv("CNI_PATH"))
	if err != nil {
		return nil, err
	}
	return runPath(ctx, path, verb, stdin)
}

func runPath(ctx context.Context, path, verb string, stdin []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = withCommand(os.Environ(), verb)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return nil, fmt.Errorf("run plugin %s: %w", path, err)
	}
	var cniErr types.Error
	if json.Unmarshal(stdout.Bytes(), &cniErr) == nil && cniErr.Code != 0 {
		return nil, &cniErr
	}
	return nil, fmt.Errorf("plugin %s %s: %w: %s", filepath.Base(path), verb, err,
		strings.TrimSpace(stdout.String()+" "+stderr.String()))
}

// withCommand is env with CNI_COMMAND set to verb.
func withCommand(env []string, verb string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "CNI_COMMAND=") {
			out = append(out, kv)
		}
	}
	return append(out, "CNI_COMMAND="+verb)
}

// Add runs plugin's ADD and decodes its result in the configuration's
// cniVersion, as the plugin must answer.
func Add(ctx context.Context, plugin string, stdin []byte) (types.Result, error) {
	out, err := Run(ctx, plugin, "ADD", stdin)
	if err != nil {
		return nil, err
	}
	confVersion, err := (&version.ConfigDecoder{}).Decode(stdin)
	if err != nil {
		return nil, fmt.Errorf("read cniVersion of the configuration: %w", err)
	}
	res, err := create.Create(confVersion, out)
	if err != nil {
		return nil, fmt.Errorf("decode plugin %q result: %w", plugin, err)
	}
	return res, nil
}

// Supports reports whether plugin's VERSION lists want.
func Supports(ctx context.Context, plugin, want string) (bool, error) {
	out, err := Run(ctx, plugin, "VERSION", []byte(`{"cniVersion":"`+version.Current()+`"}`))
	if err != nil {
		return false, err
	}
	info, err := (&version.PluginDecoder{}).Decode(out)
	if err != nil {
		return false, fmt.Errorf("decode plugin %q versions: %w", plugin, err)
	}
	for _, v := range info.SupportedVersions() {
		if v == want {
			return true, nil
		}
	}
	return false, nil
}
