// Command image writes the ipvlan-cni container image as an archive,
// without a container daemon: the static plugin binaries under /plugins/,
// the installer (deploy/installer) at /installer as the entrypoint,
// linux/amd64.
//
//	go run ./deploy/image -bin DIR -o ipvlan-cni.tar [-name localhost/ipvlan-cni:dev]
//
// DIR holds the plugins (-plugins lists their names) and the installer
// binary, built by make image. The archive is an OCI image layout and a
// docker-save archive in one tar (see writeArchive): ctr images import,
// docker load and podman load all read it and name the image -name, a
// full name (REGISTRY/NAME:TAG) that every runtime keeps as it is. The file times and the image's creation
// time are SOURCE_DATE_EPOCH, 0 when unset, so the same binaries make
// the same image digest.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("image", flag.ContinueOnError)
	fl.SetOutput(stderr)
	bin := fl.String("bin", "bin", "directory holding the plugin binaries and the installer")
	plugins := fl.String("plugins", "ipvlan,host-local,cluster-ipam,dhcp", "comma-separated names of the plugin binaries in -bin")
	installer := fl.String("installer", "", "the installer binary (default: installer in -bin)")
	ref := fl.String("name", "localhost/ipvlan-cni:dev", "the image's full name, REGISTRY/NAME:TAG")
	out := fl.String("o", ".cache/image/ipvlan-cni.tar", "the archive to write")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "image: unexpected arguments %q\n", fl.Args())
		return 2
	}
	created, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 2
	}
	if err := checkName(*ref); err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 2
	}
	spec := imageSpec{Installer: *installer, Created: created}
	if spec.Installer == "" {
		spec.Installer = filepath.Join(*bin, "installer")
	}
	for _, p := range strings.Split(*plugins, ",") {
		if p = strings.TrimSpace(p); p != "" {
			spec.Plugins = append(spec.Plugins, filepath.Join(*bin, p))
		}
	}
	img, err := buildImage(spec)
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	if err := writeArchiveFile(*out, img, *ref, created); err != nil {
		fmt.Fprintf(stderr, "image: write %s: %v\n", *out, err)
		return 1
	}
	digest, err := img.Digest()
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "image: wrote %s: %s (%s)\n", *out, *ref, digest)
	return 0
}

// sourceDateEpoch is the time SOURCE_DATE_EPOCH (seconds since 1970) names,
// the epoch itself when it is empty.
func sourceDateEpoch(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil || s < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", v)
	}
	return time.Unix(s, 0).UTC(), nil
}
