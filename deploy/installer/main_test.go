package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// runAsInstaller, set in a child's environment, makes the test binary run
// the installer's main instead of the tests: the tests drive the command
// as a separate process, its flags, output and exit status.
const runAsInstaller = "IPVLAN_CNI_TEST_RUN_INSTALLER"

func TestMain(m *testing.M) {
	if os.Getenv(runAsInstaller) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// installerCommand is the installer, as a separate process, with args.
func installerCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), runAsInstaller+"=1")
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run the installer: %v", err)
	return -1
}

func TestCommandOnce(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "ipvlan"), "ipvlan", 0o755)
	writeFile(t, filepath.Join(src, "dhcp"), "dhcp", 0o755)
	writeFile(t, filepath.Join(dst, "dhcp"), "dhcp", 0o755)

	var stdout, stderr bytes.Buffer
	cmd := installerCommand(t, "-src", src, "-dst", dst, "-once")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if code := exitCode(t, cmd.Run()); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr.String())
	}
	want := "installer: unchanged " + filepath.Join(dst, "dhcp") + "\n" +
		"installer: installed " + filepath.Join(dst, "ipvlan") + "\n"
	if diff := cmp.Diff(want, stdout.String()); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	if got := stateOf(t, filepath.Join(dst, "ipvlan")); got.content != "ipvlan" || got.mode != 0o755 {
		t.Errorf("installed file: %q %v", got.content, got.mode)
	}
}

// TestCommandWaitsForSIGTERM: without -once the installer installs, says
// so, keeps running, and exits 0 on SIGTERM.
func TestCommandWaitsForSIGTERM(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "ipvlan"), "ipvlan", 0o755)
	cmd := installerCommand(t, "-src", src, "-dst", dst)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // the test failing before SIGTERM

	lines := bufio.NewScanner(out)
	var got []string
	for lines.Scan() {
		got = append(got, lines.Text())
		if strings.Contains(lines.Text(), "waiting") {
			break
		}
	}
	want := []string{"installer: installed " + filepath.Join(dst, "ipvlan"), "installer: done, waiting for SIGTERM"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("stdout (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
	}

	// Still running a while later.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("the installer exited without SIGTERM: %v; stderr:\n%s", err, stderr.String())
	case <-time.After(200 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if code := exitCode(t, err); code != 0 {
			t.Errorf("exit status after SIGTERM %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the installer did not exit within 10s of SIGTERM")
	}
}

func TestCommandFails(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "ipvlan"), "ipvlan", 0o755)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"missing destination", []string{"-src", src, "-dst", missing, "-once"}, 1,
			"installer: destination: stat " + missing + ": no such file or directory\n"},
		{"missing source", []string{"-src", missing, "-dst", t.TempDir(), "-once"}, 1,
			"installer: source: open " + missing + ": no such file or directory\n"},
		{"extra argument", []string{"-once", "now"}, 2, "installer: unexpected arguments [\"now\"]\n"},
		{"unknown flag", []string{"-force"}, 2, "flag provided but not defined: -force\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := installerCommand(t, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if code := exitCode(t, cmd.Run()); code != tt.wantCode {
				t.Errorf("exit status %d, want %d", code, tt.wantCode)
			}
			if !strings.HasPrefix(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want it to start with %q", stderr.String(), tt.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
