package supplychain

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// FlipByte returns img with one byte of the file at path (in whichever layer holds it)
// changed, everything else as it was: what an attacker who can push to the repository, or a
// corrupted mirror, would serve. Its layer, and so its manifest, have new digests.
func FlipByte(img v1.Image, path string) (v1.Image, error) {
	path = strings.TrimPrefix(path, "/")
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	found := false
	out := make([]v1.Layer, len(layers))
	for i, l := range layers {
		out[i] = l
		if found {
			continue
		}
		changed, ok, err := flipInLayer(l, path)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i], found = changed, true
		}
	}
	if !found {
		return nil, fmt.Errorf("no layer of the image has %s", path)
	}
	// The same configuration on an empty image, then the layers again: AppendLayers writes
	// the diff IDs of the new layers into it.
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = nil
	cf.History = nil
	base, err := mutate.ConfigFile(empty.Image, cf)
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(base, out...)
}

// flipInLayer rewrites layer l's tar with the middle byte of path's content inverted; ok is
// false when l has no such file.
func flipInLayer(l v1.Layer, path string) (v1.Layer, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(rc)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, false, err
		}
		if strings.TrimPrefix(h.Name, "./") == path && len(body) > 0 {
			body[len(body)/2] ^= 0xff
			found = true
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, false, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, false, err
		}
	}
	if !found {
		return nil, false, nil
	}
	if err := tw.Close(); err != nil {
		return nil, false, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	return layer, true, err
}

// Relabel returns img with the label key set to value: another image (another digest) with
// the same layers.
func Relabel(img v1.Image, key, value string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	c := *cf.Config.DeepCopy()
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	c.Labels[key] = value
	return mutate.Config(img, c)
}

// ReadFile returns the content of the file at path in img's filesystem (its layers applied).
func ReadFile(img v1.Image, path string) ([]byte, error) {
	path = strings.TrimPrefix(path, "/")
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("the image has no %s", path)
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimPrefix(h.Name, "./") == path {
			return io.ReadAll(tr)
		}
	}
}
