package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the image keeps the binaries.
const (
	pluginDir     = "plugins"   // /plugins/<name>, the installer's default -src
	installerPath = "installer" // /installer, the entrypoint
)

// The annotations of the archive's index.json that name the image.
const (
	// refNameAnnotation is the OCI reference name; podman and ctr name
	// the image after it when nothing else names it.
	refNameAnnotation = "org.opencontainers.image.ref.name"
	// containerdNameAnnotation is the full name containerd (ctr images
	// import, CRI) stores the image under; it wins over the OCI one.
	containerdNameAnnotation = "io.containerd.image.name"
)

// imageSpec is what goes into the image.
type imageSpec struct {
	Plugins   []string  // paths of the plugin binaries, each put in /plugins/ under its base name
	Installer string    // path of the installer binary, put at /installer
	Created   time.Time // the image's creation time and every file's modification time
}

// buildImage makes the linux/amd64 image: one layer holding /plugins/<name>
// for each plugin and /installer, all 0755 and owned by root, with
// /installer as the entrypoint. The same inputs and Created give the same
// image, digest for digest.
func buildImage(s imageSpec) (v1.Image, error) {
	if len(s.Plugins) == 0 {
		return nil, fmt.Errorf("no plugin binaries given")
	}
	files := map[string]string{installerPath: s.Installer}
	order := []string{pluginDir + "/"}
	for _, p := range s.Plugins {
		inImage := path.Join(pluginDir, filepath.Base(p))
		if _, dup := files[inImage]; dup {
			return nil, fmt.Errorf("two plugins named %s", filepath.Base(p))
		}
		files[inImage] = p
		order = append(order, inImage)
	}
	order = append(order, installerPath)
	layerBytes, err := layerTar(order, files, s.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make the layer: %w", err)
	}
	cfg := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: s.Created},
		Config: v1.Config{
			Entrypoint: []string{"/" + installerPath},
			WorkingDir: "/",
			Labels: map[string]string{
				"org.opencontainers.image.title":       "ipvlan-cni",
				"org.opencontainers.image.description": "the ipvlan-cni plugins in /plugins, and /installer, which copies them into a node's CNI bin directory",
			},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("set the image config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: s.Created},
			CreatedBy: "go run ./deploy/image",
			Comment:   "plugins and installer",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("add the layer: %w", err)
	}
	return img, nil
}

// layerTar is the gzipped tar of the layer: the entries of order, a
// directory when the name ends in "/", else the file files[name].
func layerTar(order []string, files map[string]string, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, entry := range order {
		if strings.HasSuffix(entry, "/") {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: entry, Mode: 0o755, ModTime: mtime}); err != nil {
				return nil, fmt.Errorf("layer: %w", err)
			}
			continue
		}
		b, err := os.ReadFile(files[entry])
		if err != nil {
			return nil, fmt.Errorf("read the binary for /%s: %w", entry, err)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: entry, Mode: 0o755, Size: int64(len(b)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// checkName checks ref, a full image name with a tag such as
// localhost/ipvlan-cni:dev. A name without its registry part is refused:
// runtimes complete one differently (containerd and Docker with a default
// registry, Podman with its search list), and the image would go by
// another name on a node than the one the DaemonSet runs.
func checkName(ref string) error {
	const want = "want REGISTRY/NAME:TAG, such as localhost/ipvlan-cni:dev"
	if last := ref[strings.LastIndex(ref, "/")+1:]; !strings.Contains(last, ":") {
		return fmt.Errorf("name %q has no tag: %s", ref, want)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("name %q: %w: %s", ref, err, want)
	}
	if host, _, ok := strings.Cut(ref, "/"); !ok || host != tag.RegistryStr() {
		return fmt.Errorf("name %q has no registry part: %s", ref, want)
	}
	return nil
}

// dockerManifest is one entry of a docker-save archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeArchive writes img, named ref, as one tar that is both an OCI image
// layout (oci-layout, index.json, blobs/sha256/...) and a docker-save
// archive (manifest.json pointing at the same blobs), the form Docker 25's
// docker save writes. containerd's importer (ctr images import) reads the
// OCI layout and names the image after index.json's
// io.containerd.image.name; Docker and go-containerregistry's tarball
// package read manifest.json and its RepoTags; podman reads either.
func writeArchive(w io.Writer, img v1.Image, ref string, mtime time.Time) error {
	if err := checkName(ref); err != nil {
		return err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	configName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("image manifest: %w", err)
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image manifest: %w", err)
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("image manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}

	tw := tar.NewWriter(w)
	writeEntry := func(name string, b []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		if _, err := tw.Write(b); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		return nil
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

	if err := writeEntry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: mtime}); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	docker := dockerManifest{Config: blob(configName), RepoTags: []string{ref}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer digest: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		if err := writeEntry(blob(d), b); err != nil {
			return err
		}
		docker.Layers = append(docker.Layers, blob(d))
	}
	if err := writeEntry(blob(configName), rawConfig); err != nil {
		return err
	}
	if err := writeEntry(blob(manifestDigest), rawManifest); err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mediaType,
			Size:      int64(len(rawManifest)),
			Digest:    manifestDigest,
			Platform:  &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture},
			Annotations: map[string]string{
				refNameAnnotation:        ref,
				containerdNameAnnotation: ref,
			},
		}},
	}
	rawIndex, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("index.json: %w", err)
	}
	if err := writeEntry("index.json", rawIndex); err != nil {
		return err
	}
	rawDocker, err := json.Marshal([]dockerManifest{docker})
	if err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	if err := writeEntry("manifest.json", rawDocker); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// writeArchiveFile writes the archive to path through a temporary file
// beside it, so that path is never a partial archive.
func writeArchiveFile(outPath string, img v1.Image, ref string, mtime time.Time) (err error) {
	dir := filepath.Dir(outPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(outPath)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := writeArchive(f, img, ref, mtime); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), outPath)
}
