package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

var pluginNames = []string{"ipvlan", "host-local", "cluster-ipam", "dhcp"}

// fakeBin writes a fake binary for each plugin and the installer, each
// with its own content, mode 0644 (the image must make them 0755).
func fakeBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range append(append([]string{}, pluginNames...), "installer") {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("fake "+n+" binary\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildArchive runs the command's main with args and returns the archive.
func buildArchive(t *testing.T, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sub", "ipvlan-cni.tar")
	var stdout, stderr bytes.Buffer
	if code := run(append(args, "-o", out), &stdout, &stderr); code != 0 {
		t.Fatalf("image exit status %d:\n%s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "image: wrote "+out+": ") {
		t.Errorf("stdout %q does not name the archive", stdout.String())
	}
	return out
}

type fileEntry struct {
	Mode     int64
	UID, GID int
	Content  string
}

// imageFiles is the file system the image unpacks to.
func imageFiles(t *testing.T, img v1.Image) map[string]fileEntry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]fileEntry{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = fileEntry{hdr.Mode, hdr.Uid, hdr.Gid, string(b)}
	}
	return files
}

// untar unpacks the archive into a new directory.
func untar(t *testing.T, archive string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q is outside the archive", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, b, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("archive entry %q of type %c", hdr.Name, hdr.Typeflag)
		}
	}
}

func TestArchive(t *testing.T) {
	bin := fakeBin(t)
	archive := buildArchive(t, "-bin", bin)

	// As a docker-save archive, by its tag.
	tag, err := name.NewTag("localhost/ipvlan-cni:dev")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("read the archive as docker-save, tag %s: %v", tag, err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("docker-save image does not validate: %v", err)
	}

	want := map[string]fileEntry{
		"plugins":   {Mode: 0o755},
		"installer": {Mode: 0o755, Content: "fake installer binary\n"},
	}
	for _, n := range pluginNames {
		want["plugins/"+n] = fileEntry{Mode: 0o755, Content: "fake " + n + " binary\n"}
	}
	if diff := cmp.Diff(want, imageFiles(t, img)); diff != "" {
		t.Errorf("image files (-want +got):\n%s", diff)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/installer"}, cfg.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if cfg.Config.Cmd != nil || cfg.Config.User != "" {
		t.Errorf("cmd %q, user %q: want none (root), the DaemonSet gives the arguments", cfg.Config.Cmd, cfg.Config.User)
	}

	// As an OCI image layout: one image, named, the same config and layers.
	idx, err := layout.ImageIndexFromPath(untar(t, archive))
	if err != nil {
		t.Fatalf("read the archive as an OCI layout: %v", err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("OCI layout does not validate: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	wantAnnotations := map[string]string{
		"org.opencontainers.image.ref.name": "localhost/ipvlan-cni:dev",
		"io.containerd.image.name":          "localhost/ipvlan-cni:dev",
	}
	if diff := cmp.Diff(wantAnnotations, desc.Annotations); diff != "" {
		t.Errorf("index.json annotations (-want +got):\n%s", diff)
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
		t.Errorf("index.json platform %v, want linux/amd64", desc.Platform)
	}
	ociImg, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := ociImg.MediaType(); mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s, want the OCI one", mt)
	}
	if got, want := digests(t, ociImg), digests(t, img); !cmp.Equal(got, want) {
		t.Errorf("OCI layout's config and layers %v, docker-save's %v: want the same blobs", got, want)
	}
	if diff := cmp.Diff(want, imageFiles(t, ociImg)); diff != "" {
		t.Errorf("OCI image files (-want +got):\n%s", diff)
	}
}

// digests lists an image's config digest and layer digests.
func digests(t *testing.T, img v1.Image) []string {
	t.Helper()
	c, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.String()}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.String())
	}
	return got
}

// TestArchiveReproducible: the same binaries give the same archive, byte
// for byte, and another name only changes the names.
func TestArchiveReproducible(t *testing.T) {
	bin := fakeBin(t)
	sum := func(path string) [32]byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	first, second := buildArchive(t, "-bin", bin), buildArchive(t, "-bin", bin)
	if sum(first) != sum(second) {
		t.Errorf("two builds from the same binaries differ")
	}
	other := buildArchive(t, "-bin", bin, "-name", "registry.example:5000/cni/ipvlan-cni:v1")
	idx, err := layout.ImageIndexFromPath(untar(t, other))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"org.opencontainers.image.ref.name": "registry.example:5000/cni/ipvlan-cni:v1",
		"io.containerd.image.name":          "registry.example:5000/cni/ipvlan-cni:v1",
	}
	if diff := cmp.Diff(want, im.Manifests[0].Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
}

func TestArchiveFails(t *testing.T) {
	bin := fakeBin(t)
	if err := os.Remove(filepath.Join(bin, "dhcp")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"missing plugin", []string{"-bin", bin}, 1, "image: read the binary for /plugins/dhcp: open "},
		{"no tag", []string{"-bin", bin, "-name", "localhost/ipvlan-cni"}, 2, `image: name "localhost/ipvlan-cni" has no tag: want REGISTRY/NAME:TAG`},
		{"no registry", []string{"-bin", bin, "-name", "ipvlan-cni:dev"}, 2, `image: name "ipvlan-cni:dev" has no registry part: want REGISTRY/NAME:TAG`},
		{"no plugins", []string{"-bin", bin, "-plugins", ""}, 1, "image: no plugin binaries given"},
		{"extra argument", []string{"-bin", bin, "now"}, 2, `image: unexpected arguments ["now"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "image.tar")
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"-o", out}, tt.args...), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d", code, tt.wantCode)
			}
			if !strings.HasPrefix(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want it to start with %q", stderr.String(), tt.wantStderr)
			}
			entries, err := os.ReadDir(filepath.Dir(out))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("left in the output directory: %v", entries)
			}
		})
	}
}
