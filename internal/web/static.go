package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// Static serves a service's embedded assets. Pages link to them with URL, which adds a hash
// of the content: a request carrying the current hash is cached for a year (the URL changes
// when the file does), anything else must revalidate with the ETag.
type Static struct {
	prefix string
	files  map[string]staticFile
}

type staticFile struct {
	data []byte
	hash string
}

// Assets loads a service's embedded static files as both services lay them out: the files
// of assets/static, served under /static/.
func Assets(fsys fs.FS) (*Static, error) {
	sub, err := fs.Sub(fsys, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("assets: %w", err)
	}
	return NewStatic(sub, "/static/")
}

// NewStatic reads every file of fsys once; prefix is the URL path the handler is mounted at
// (e.g. "/static/").
func NewStatic(fsys fs.FS, prefix string) (*Static, error) {
	s := &Static{prefix: prefix, files: map[string]staticFile{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		s.add(p, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read assets: %w", err)
	}
	return s, nil
}

func (s *Static) add(name string, b []byte) {
	sum := sha256.Sum256(b)
	s.files[name] = staticFile{data: b, hash: hex.EncodeToString(sum[:6])}
}

// SetAccent adds the stylesheet of an accent colour (see ParseAccentColor) as
// AccentStylesheet, which Page.Head then links after the page's own. "" adds nothing, so the
// page stays exactly as it is without one. Call it before rendering the pages.
func (s *Static) SetAccent(color string) error {
	hex, err := ParseAccentColor(color)
	if err != nil || hex == "" {
		return err
	}
	s.add(AccentStylesheet, accentCSS(hex))
	return nil
}

// has reports whether the asset exists.
func (s *Static) has(name string) bool {
	_, ok := s.files[name]
	return ok
}

// URL returns the versioned URL of an asset, for the pages. It panics on an unknown name: the
// pages are rendered when a service starts, so a wrong name stops every test that starts one.
func (s *Static) URL(name string) string {
	f, ok := s.files[name]
	if !ok {
		panic("web: no asset " + name)
	}
	return s.prefix + name + "?v=" + f.hash
}

// ServeHTTP serves the asset named by the path after the prefix.
func (s *Static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[min(len(s.prefix), len(r.URL.Path)):]
	f, ok := s.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("ETag", `"`+f.hash+`"`)
	if r.URL.Query().Get("v") == f.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(f.data))
}
