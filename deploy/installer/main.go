// Command installer puts the CNI plugins shipped in its image into a node's
// CNI bin directory. It is the entrypoint of the image make image builds,
// run by deploy/kubernetes/daemonset.yaml on every node with the host's
// /opt/cni/bin mounted at /host/opt/cni/bin.
//
// Every regular file of -src (default /plugins) is copied to -dst (default
// /host/opt/cni/bin) unless the destination is identical already; a
// changed file is replaced atomically (temporary file, fsync, chmod 0755,
// rename), so a plugin being exec'd or running is never broken. One line
// per file says what was done (installed, replaced, unchanged). Then,
// unless -once, it waits for SIGTERM and exits 0, so that the DaemonSet's
// pod stays running; a new image rolled out reinstalls.
//
// It needs write access to -dst and nothing else: no network, no
// capability beyond owning the directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the installer's main: it returns the exit status, 0 on success,
// 1 when installing failed and 2 for bad arguments. Without -once it
// returns only when ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("installer", flag.ContinueOnError)
	fl.SetOutput(stderr)
	src := fl.String("src", "/plugins", "directory holding the plugin binaries to install")
	dst := fl.String("dst", "/host/opt/cni/bin", "the node's CNI bin directory, as mounted in this container")
	once := fl.Bool("once", false, "exit after installing instead of waiting for SIGTERM")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "installer: unexpected arguments %q\n", fl.Args())
		return 2
	}
	err := install(*src, *dst, func(name string, a action) {
		fmt.Fprintf(stdout, "installer: %s %s\n", a, filepath.Join(*dst, name))
	})
	if err != nil {
		fmt.Fprintf(stderr, "installer: %v\n", err)
		return 1
	}
	if *once {
		return 0
	}
	fmt.Fprintf(stdout, "installer: done, waiting for SIGTERM\n")
	<-ctx.Done()
	return 0
}
