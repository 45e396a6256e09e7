// Package tools holds tools/versions.env, every pinned tool version, and the test that keeps
// it in step with the go.mod files that really build the tools.
package tools

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readVersions reads versions.env's NAME=value lines, as make and bash do.
func readVersions(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("versions.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(\S+)$`)
	versions := map[string]string{}
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		text := s.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		m := line.FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("versions.env:%d: %q is not NAME=value (no spaces, no quotes, no comment after it: make and bash must read it alike)", n, text)
		}
		if _, dup := versions[m[1]]; dup {
			t.Fatalf("versions.env:%d: %s twice", n, m[1])
		}
		versions[m[1]] = m[2]
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return versions
}

// required returns the version a go.mod requires of module, "" when it does not.
func required(t *testing.T, gomod, module string) string {
	t.Helper()
	text, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	// "require module v1.2.3" or, inside a require block, "module v1.2.3", either with a comment.
	re := regexp.MustCompile(`(?m)^(?:require\s+|\s+)` + regexp.QuoteMeta(module) + `\s+(v\S+)`)
	if m := re.FindSubmatch(text); m != nil {
		return string(m[1])
	}
	return ""
}

// TestVersionsMatchTheModules fails when versions.env and a tools module disagree on a
// version, when a version there is not used, or when two go.mod files name different Go.
func TestVersionsMatchTheModules(t *testing.T) {
	versions := readVersions(t)
	// The tools built from a tools module: the module that builds it and the dependency it is.
	built := map[string]struct{ gomod, module string }{
		"KUBERNETES_VERSION":             {"kube/go.mod", "k8s.io/kubernetes"},
		"ETCD_VERSION":                   {"kube/go.mod", "go.etcd.io/etcd/server/v3"},
		"COREDNS_VERSION":                {"kube/go.mod", "github.com/coredns/coredns"},
		"KUBE_ROUTER_VERSION":            {"kube/go.mod", "github.com/cloudnativelabs/kube-router/v2"},
		"LOCAL_PATH_PROVISIONER_VERSION": {"kube/go.mod", "github.com/rancher/local-path-provisioner"},
		"METRICS_SERVER_VERSION":         {"metrics-server/go.mod", "sigs.k8s.io/metrics-server"},
		"TRAEFIK_VERSION":                {"traefik/go.mod", "github.com/traefik/traefik/v3"},
		"COMPOSE_VERSION":                {"compose/go.mod", "github.com/docker/compose/v5"},
		"POLICY_CONTROLLER_VERSION":      {"policy-controller/go.mod", "github.com/sigstore/policy-controller"},
	}
	// The tools go install builds, and the database make vuln reads: their only pin is here.
	installed := []string{"STATICCHECK_VERSION", "GOVULNCHECK_VERSION", "ACTIONLINT_VERSION", "VULNDB_VERSION",
		"COSIGN_VERSION", "SYFT_VERSION", "DISTRIBUTION_VERSION"}
	// actionlint is also a library: tools/workflows parses the workflows with it, and must
	// read them as the actionlint that scripts/actionlint runs does.
	if got, want := required(t, "workflows/go.mod", "github.com/rhysd/actionlint"), versions["ACTIONLINT_VERSION"]; got != want {
		t.Errorf("versions.env says ACTIONLINT_VERSION=%s, but tools/workflows/go.mod requires github.com/rhysd/actionlint %s: change both together", want, got)
	}

	for name, b := range built {
		want, ok := versions[name]
		if !ok {
			t.Errorf("versions.env has no %s (%s in tools/%s)", name, b.module, b.gomod)
			continue
		}
		if got := required(t, b.gomod, b.module); got != want {
			t.Errorf("versions.env says %s=%s, but tools/%s requires %s %s: change both together", name, want, b.gomod, b.module, got)
		}
	}
	known := map[string]bool{"GO_VERSION": true}
	for name := range built {
		known[name] = true
	}
	for _, name := range installed {
		known[name] = true
		if versions[name] == "" {
			t.Errorf("versions.env has no %s", name)
		}
	}
	for name := range versions {
		if !known[name] {
			t.Errorf("versions.env: %s is checked by no test: add it to TestVersionsMatchTheModules with what reads it", name)
		}
	}

	// Helm renders for the Kubernetes the cluster checks run (its Capabilities.KubeVersion).
	render, err := os.ReadFile("../deploy/kubetest/render/render.go")
	if err != nil {
		t.Fatal(err)
	}
	if want := `Version: "` + versions["KUBERNETES_VERSION"] + `"`; !strings.Contains(string(render), want) {
		t.Errorf("deploy/kubetest/render/render.go's KubeVersion must carry %s, KUBERNETES_VERSION of versions.env", want)
	}

	// One Go for every module: scripts/go fetches GO_VERSION, and each go.mod must name it.
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`)
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Hidden folders, and lego's copy that prunelego writes (its own go.mod, ignored by git).
			if p != ".." && (strings.HasPrefix(d.Name(), ".") || filepath.ToSlash(p) == "../tools/traefik/lego") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() != "go.mod" {
			return nil
		}
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got := "no version"
		if m := goLine.FindSubmatch(text); m != nil {
			got = string(m[1])
		}
		if got != versions["GO_VERSION"] {
			t.Errorf("%s names Go %s; versions.env's GO_VERSION is %s: every module builds with one Go", p, got, versions["GO_VERSION"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
