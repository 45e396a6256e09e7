// Package docs holds the test that keeps docs/architecture.md, the map of the code, complete.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMapNamesEverything fails when a Go package, a Go module, a script or a deployment folder
// exists that docs/architecture.md does not name (as `path` in backquotes).
func TestMapNamesEverything(t *testing.T) {
	text, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(string(text), -1) {
		named[m[1]] = true
	}
	root := ".."
	var want []string
	add := func(p string) {
		for _, w := range want {
			if w == p {
				return
			}
		}
		want = append(want, p)
	}
	// Every directory holding Go files or a go.mod, but not testdata, hidden ones or generated
	// third-party copies (tools/traefik/lego is lego, written by prunelego, ignored by git).
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
		if d.IsDir() {
			switch {
			case p == root:
				return nil
			case strings.HasPrefix(d.Name(), "."), d.Name() == "testdata", d.Name() == "node_modules",
				rel == "tools/traefik/lego", rel == "bin", rel == "data":
				return filepath.SkipDir
			}
			return nil
		}
		if dir := filepath.ToSlash(filepath.Dir(rel)); dir != "." && (strings.HasSuffix(d.Name(), ".go") || d.Name() == "go.mod") {
			add(dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, glob := range []string{"scripts/*", "deploy/k8s/*", "deploy/helm/*", ".github/workflows", ".ci/run"} {
		matches, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			rel := filepath.ToSlash(strings.TrimPrefix(m, root+string(filepath.Separator)))
			if fi, err := os.Stat(m); err == nil && (fi.IsDir() || glob == "scripts/*" || glob == ".ci/run") {
				add(rel)
			}
		}
	}
	for _, p := range want {
		if named[p] {
			continue
		}
		t.Errorf("docs/architecture.md does not name `%s`", p)
	}
	if len(want) < 40 {
		t.Errorf("found only %d things to name; is the walk broken? %v", len(want), want)
	}
}
