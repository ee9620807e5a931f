package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// buildHelper links testdata/helper, a stand-in plugin that prints
// version, to out.
func buildHelper(t *testing.T, out, version string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, "-ldflags=-X=main.version="+version, "./testdata/helper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the helper plugin: %v\n%s", err, b)
	}
}

// twoVersions builds the helper plugin as src-a/plug (version A) and
// src-b/plug (version B), and installs version A in a new destination
// directory. It skips the test where the temporary directory is mounted
// noexec.
func twoVersions(t *testing.T) (srcA, srcB, dst string) {
	t.Helper()
	srcA, srcB, dst = t.TempDir(), t.TempDir(), t.TempDir()
	buildHelper(t, filepath.Join(srcA, "plug"), "A")
	buildHelper(t, filepath.Join(srcB, "plug"), "B")
	if err := install(srcA, dst, func(string, action) {}); err != nil {
		t.Fatalf("install version A: %v", err)
	}
	if _, err := exec.Command(filepath.Join(dst, "plug")).Output(); errors.Is(err, syscall.EACCES) {
		t.Skipf("cannot exec in %s (mounted noexec?): %v", dst, err)
	}
	return srcA, srcB, dst
}

// TestReplaceUnderRunningPlugin replaces a plugin binary while a process
// runs from it: the process goes on running the old code, its executable
// is the old, now unlinked file, and a new exec of the path runs the new
// one.
func TestReplaceUnderRunningPlugin(t *testing.T) {
	_, srcB, dst := twoVersions(t)
	path := filepath.Join(dst, "plug")

	running := exec.Command(path, "serve")
	stdin, err := running.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := running.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	defer running.Process.Kill()
	replies := bufio.NewReader(stdout)
	readLine := func() string {
		t.Helper()
		line, err := replies.ReadString('\n')
		if err != nil {
			t.Fatalf("read from the running plugin: %v (read %q)", err, line)
		}
		return strings.TrimSuffix(line, "\n")
	}
	if got := readLine(); got != "A ready" {
		t.Fatalf("running plugin says %q, want %q", got, "A ready")
	}
	before := stateOf(t, path)

	var got []reported
	if err := install(srcB, dst, func(name string, a action) { got = append(got, reported{name, a}) }); err != nil {
		t.Fatalf("install version B under the running plugin: %v", err)
	}
	if len(got) != 1 || got[0] != (reported{"plug", replaced}) {
		t.Errorf("reported %v, want [{plug replaced}]", got)
	}
	if after := stateOf(t, path); after.inode == before.inode {
		t.Errorf("inode %d unchanged: the running plugin's file was written in place", after.inode)
	}

	// The running process is alive, still the old code, and runs from the
	// old inode, which the kernel shows as deleted.
	if _, err := fmt.Fprintln(stdin, "ping"); err != nil {
		t.Fatalf("write to the running plugin: %v", err)
	}
	if got := readLine(); got != "A ping" {
		t.Errorf("running plugin answers %q, want %q", got, "A ping")
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", running.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := path + " (deleted)"; exe != want {
		t.Errorf("running plugin's /proc/PID/exe is %q, want %q", exe, want)
	}

	// A new exec runs the new file.
	out, err := exec.Command(path).Output()
	if err != nil {
		t.Fatalf("exec %s after the replacement: %v", path, err)
	}
	if string(out) != "B\n" {
		t.Errorf("new exec prints %q, want %q", out, "B\n")
	}

	// And the old process ends normally.
	stdin.Close()
	if rest, _ := io.ReadAll(replies); len(rest) != 0 {
		t.Errorf("running plugin printed %q after stdin closed", rest)
	}
	if err := running.Wait(); err != nil {
		t.Errorf("the plugin that ran during the replacement exited with %v, want status 0", err)
	}
}

// TestExecDuringReplacements execs the plugin's path in a loop, as a
// runtime does, while installer processes replace it many times: no exec
// may fail, with ETXTBSY (a writer still has the file open), ENOENT (the
// name was missing a moment) or ENOEXEC (a partial file), and every exec
// prints one of the two versions, whole.
func TestExecDuringReplacements(t *testing.T) {
	srcA, srcB, dst := twoVersions(t)
	path := filepath.Join(dst, "plug")
	const rounds = 30
	const execers = 2

	var (
		mu       sync.Mutex
		seen     = map[string]int{}
		failures []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for range execers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := exec.Command(path).Output()
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, describeExecError(err))
				default:
					seen[string(out)]++
				}
				mu.Unlock()
			}
		}()
	}

	for i := range rounds {
		src := srcB
		if i%2 == 1 {
			src = srcA
		}
		out, err := installerCommand(t, "-src", src, "-dst", dst, "-once").CombinedOutput()
		if code := exitCode(t, err); code != 0 {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: installer exit status %d:\n%s", i, code, out)
		}
		if want := "installer: replaced " + path + "\n"; string(out) != want {
			t.Errorf("round %d: installer says %q, want %q", i, out, want)
		}
	}
	close(stop)
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d execs failed during the replacements, first: %s", len(failures), failures[0])
	}
	for out, n := range seen {
		if out != "A\n" && out != "B\n" {
			t.Errorf("%d execs printed %q, want A or B", n, out)
		}
	}
	if seen["A\n"] == 0 || seen["B\n"] == 0 {
		t.Errorf("execs saw A %d times and B %d times: want both, the loop ran across the replacements", seen["A\n"], seen["B\n"])
	}
	t.Logf("%d replacements, %d execs of A, %d of B", rounds, seen["A\n"], seen["B\n"])
	if left := tempFiles(t, dst); left != nil {
		t.Errorf("temporary files left: %q", left)
	}
}

// describeExecError names the errno of a failed exec, if it has one.
func describeExecError(err error) string {
	for _, e := range []struct {
		errno syscall.Errno
		name  string
	}{{syscall.ETXTBSY, "ETXTBSY"}, {syscall.ENOENT, "ENOENT"}, {syscall.ENOEXEC, "ENOEXEC"}} {
		if errors.Is(err, e.errno) {
			return fmt.Sprintf("%s: %v", e.name, err)
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Sprintf("exit status %d: %s", ee.ExitCode(), ee.Stderr)
	}
	return err.Error()
}
