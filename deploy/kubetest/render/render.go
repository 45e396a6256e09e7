// Package render turns the repository's deployment files into plain Kubernetes YAML with the
// tools' own code: the kustomize API for deploy/k8s and the Helm SDK for deploy/helm/voting.
// The tests and the API server check (scripts/kube-apiserver-test, through cmd/render) use it,
// so both look at exactly the same objects.
package render

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Namespace is where the Helm chart is rendered and where the kustomize base puts everything.
const Namespace = "voting"

// ReleaseName is the Helm release name used for rendering.
const ReleaseName = "voting"

// KubeVersion is the Kubernetes version the chart is rendered for, the one the API server
// test and the cluster checks run: KUBERNETES_VERSION of tools/versions.env (its test checks
// this line).
var KubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// Kind says which tool renders a Target.
type Kind string

// The two ways of rendering.
const (
	Kustomize Kind = "kustomize"
	Helm      Kind = "helm"
)

// Target is one thing users deploy: a kustomization directory, or the chart with one values
// file (or none, for the defaults).
type Target struct {
	// Name is unique and usable as a file name, e.g. "kustomize-overlays-prod" or "helm-bitnami".
	Name string
	// Kind is Kustomize or Helm.
	Kind Kind
	// Path is the kustomization directory or the chart directory.
	Path string
	// ValueFiles are the Helm values files, in order.
	ValueFiles []string
}

// Targets lists every kustomization (base, overlays, tests combinations) and every Helm values
// file under root, the repository's top directory.
func Targets(root string) ([]Target, error) {
	k8s := filepath.Join(root, "deploy", "k8s")
	var targets []Target
	dirs := []string{filepath.Join(k8s, "base")}
	for _, pattern := range []string{"overlays/*/kustomization.yaml", "tests/*/kustomization.yaml"} {
		matches, err := filepath.Glob(filepath.Join(k8s, pattern))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		for _, m := range matches {
			dirs = append(dirs, filepath.Dir(m))
		}
	}
	for _, dir := range dirs {
		rel, err := filepath.Rel(k8s, dir)
		if err != nil {
			return nil, err
		}
		targets = append(targets, Target{
			Name: "kustomize-" + strings.ReplaceAll(rel, string(filepath.Separator), "-"),
			Kind: Kustomize,
			Path: dir,
		})
	}

	chart := filepath.Join(root, "deploy", "helm", "voting")
	targets = append(targets, Target{Name: "helm-defaults", Kind: Helm, Path: chart})
	files, err := filepath.Glob(filepath.Join(root, "deploy", "helm", "values", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		targets = append(targets, Target{
			Name:       "helm-" + strings.TrimSuffix(filepath.Base(f), ".yaml"),
			Kind:       Helm,
			Path:       chart,
			ValueFiles: []string{f},
		})
	}
	if len(targets) < 3 {
		return nil, fmt.Errorf("found only %d targets under %s: wrong root?", len(targets), root)
	}
	return targets, nil
}

// Render returns the target's objects as a multi-document YAML stream. For Helm it includes
// the test hooks (the `helm test` pod), since they are created in the cluster too.
func (t Target) Render() ([]byte, error) {
	switch t.Kind {
	case Kustomize:
		return RenderKustomize(t.Path)
	case Helm:
		return RenderHelm(t.Path, t.ValueFiles, nil)
	}
	return nil, fmt.Errorf("unknown kind %q", t.Kind)
}

// RenderKustomize builds a kustomization directory, as `kustomize build DIR` does.
func RenderKustomize(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return m.AsYaml()
}

// LoadValues merges values files and then the values in set (top-level keys replace), as
// `helm -f F1 -f F2` would, followed by set.
func LoadValues(valueFiles []string, set map[string]any) (map[string]any, error) {
	opts := values.Options{ValueFiles: valueFiles}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return nil, err
	}
	for k, v := range set {
		vals[k] = v
	}
	return vals, nil
}

// RenderHelm renders the chart with the values files (then set), as `helm template` with the
// release name and namespace above does, including schema validation. Hooks follow the
// manifest.
func RenderHelm(chartDir string, valueFiles []string, set map[string]any) ([]byte, error) {
	return RenderHelmRelease(chartDir, ReleaseName, valueFiles, set)
}

// RenderHelmRelease is RenderHelm with another release name.
func RenderHelmRelease(chartDir, name string, valueFiles []string, set map[string]any) ([]byte, error) {
	rel, err := helmRelease(chartDir, name, valueFiles, set)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "\n---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return []byte(b.String()), nil
}

// HelmNotes returns the chart's NOTES.txt as `helm install` would print it.
func HelmNotes(chartDir string, valueFiles []string, set map[string]any) (string, error) {
	rel, err := helmRelease(chartDir, ReleaseName, valueFiles, set)
	if err != nil {
		return "", err
	}
	return rel.Info.Notes, nil
}

// helmRelease runs a client-only, dry-run install: what `helm template` does.
func helmRelease(chartDir, name string, valueFiles []string, set map[string]any) (*release.Release, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	vals, err := LoadValues(valueFiles, set)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = name
	install.Namespace = Namespace
	install.KubeVersion = &KubeVersion
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return nil, fmt.Errorf("helm template %s %v: %w", chartDir, valueFiles, err)
	}
	return rel, nil
}

// Lint runs Helm's linter on the chart with the values files in strict mode (warnings fail),
// as `helm lint --strict` does, and returns every finding above INFO as an error.
func Lint(chartDir string, valueFiles []string) error {
	vals, err := LoadValues(valueFiles, nil)
	if err != nil {
		return err
	}
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = Namespace
	lint.KubeVersion = &KubeVersion
	res := lint.Run([]string{chartDir}, vals)
	if len(res.Errors) > 0 || action.HasWarningsOrErrors(res) {
		var msgs []string
		for _, m := range res.Messages {
			msgs = append(msgs, m.Error())
		}
		for _, e := range res.Errors {
			msgs = append(msgs, e.Error())
		}
		return fmt.Errorf("helm lint --strict %s %v:\n  %s", chartDir, valueFiles, strings.Join(msgs, "\n  "))
	}
	return nil
}

// WriteAll renders every target under root into dir, one file per target, and returns the
// targets in order.
func WriteAll(root, dir string) ([]Target, error) {
	targets, err := Targets(root)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		out, err := t.Render()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, t.Name+".yaml"), out, 0o644); err != nil {
			return nil, err
		}
	}
	return targets, nil
}

// Documents splits a rendering (a YAML stream) into its documents.
func Documents(rendering []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(rendering)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
}
