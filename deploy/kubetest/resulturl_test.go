package kubetest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// readerURL is result's own URL in the read-only setups (a role like voting_reader in
// docs/reliability.md).
const readerURL = "postgres://voting_reader:example@postgres.example.internal:5432/voting?sslmode=require"

// urlSource is where a container's VOTING_POSTGRES_URL comes from, and what it resolves to
// with the rendered Secrets (Secrets users create themselves stay unresolved).
type urlSource struct {
	Secret, Key string // the secretKeyRef, or "" when the URL is a value
	URL         string // resolved URL, or "secret NAME/KEY" where the Secret is not rendered
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// postgresURLOf resolves VOTING_POSTGRES_URL of one container; ok is false when it has none.
func postgresURLOf(objs []object, c corev1.Container) (urlSource, bool) {
	resolved := map[string]string{}
	for _, e := range c.Env {
		var src urlSource
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			src.Secret, src.Key = ref.Name, ref.Key
			src.URL = secretValue(objs, ref.Name, ref.Key)
		case e.ValueFrom == nil:
			// Kubernetes expands $(VAR) from the variables defined before this one.
			src.URL = envRef.ReplaceAllStringFunc(e.Value, func(m string) string {
				if v, ok := resolved[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
		default:
			continue
		}
		resolved[e.Name] = src.URL
		if e.Name == "VOTING_POSTGRES_URL" {
			return src, true
		}
	}
	return urlSource{}, false
}

// secretValue is one key of a rendered Secret, or a placeholder naming it.
func secretValue(objs []object, name, key string) string {
	for _, s := range ofKind[*corev1.Secret](objs) {
		if s.Name != name {
			continue
		}
		if v, ok := s.Data[key]; ok {
			return string(v)
		}
		if v, ok := s.StringData[key]; ok {
			return v
		}
		return "missing key " + name + "/" + key
	}
	return "secret " + name + "/" + key
}

// postgresURLs returns the URL source of the result container and those of every other app
// container that connects to PostgreSQL (migrate initContainers, worker), by "Owner/container".
func postgresURLs(t *testing.T, where string, objs []object) (result urlSource, writers map[string]urlSource) {
	t.Helper()
	writers = map[string]urlSource{}
	found := false
	for _, p := range podTemplates(objs) {
		for i, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if !isAppImage(c.Image) {
				continue
			}
			src, ok := postgresURLOf(objs, c)
			if !ok {
				continue
			}
			isMain := i >= len(p.Spec.InitContainers)
			if component(p.Meta.Labels) == "result" && isMain && c.Name == "result" {
				result, found = src, true
				continue
			}
			writers[p.Owner+"/"+c.Name] = src
		}
	}
	if !found {
		t.Fatalf("%s: no result container with VOTING_POSTGRES_URL", where)
	}
	if len(writers) < 3 {
		t.Fatalf("%s: only %d other containers connect to PostgreSQL (want both migrate and worker): %v", where, len(writers), writers)
	}
	return result, writers
}

// resultURLWant is what one rendering must give result and everyone else.
type resultURLWant struct {
	resultKey, writerKey string // the secretKeyRef keys; "" when the URL is a value
	resultSecret         string // prefix of the Secret result reads ("" for a value)
	own                  string // result's own URL; "" means the writer's URL
}

// checkResultURL fails unless result reads its URL as want says and every migrate
// initContainer and worker reads the writer's.
func checkResultURL(t *testing.T, where string, objs []object, want resultURLWant) {
	t.Helper()
	result, writers := postgresURLs(t, where, objs)
	if result.Key != want.resultKey || !strings.HasPrefix(result.Secret, want.resultSecret) {
		t.Errorf("%s: result reads VOTING_POSTGRES_URL from Secret %q key %q, want %q key %q",
			where, result.Secret, result.Key, want.resultSecret, want.resultKey)
	}
	var writerURL string
	for name, w := range writers {
		if w.Key != want.writerKey {
			t.Errorf("%s: %s reads VOTING_POSTGRES_URL from key %q, want %q", where, name, w.Key, want.writerKey)
		}
		if writerURL != "" && w.URL != writerURL {
			t.Errorf("%s: %s connects to %q, another writer to %q", where, name, w.URL, writerURL)
		}
		writerURL = w.URL
		if strings.Contains(w.URL, "voting_reader") {
			t.Errorf("%s: %s connects as the read-only role: %q", where, name, w.URL)
		}
	}
	switch {
	case strings.HasPrefix(result.URL, "secret "):
		// The Secret is the user's (prod ships none): only where it is read from is ours.
	case want.own == "" && result.URL != writerURL:
		t.Errorf("%s: result connects to %q, the writers to %q; want the same URL", where, result.URL, writerURL)
	case want.own != "" && result.URL != want.own:
		t.Errorf("%s: result connects to %q, want %q", where, result.URL, want.own)
	}
}

// TestResultHasItsOwnPostgresURL checks that result (and not its migrate initContainer, nor
// worker) can be given a read-only role's URL, in kustomize and in Helm, and that without one
// result connects with the same URL as everyone else.
func TestResultHasItsOwnPostgresURL(t *testing.T) {
	const devReader = "postgres://voting_reader:example@postgres:5432/voting?sslmode=disable"
	targets := map[string]resultURLWant{
		"kustomize-base":                              {"result-postgres-url", "postgres-url", "voting-credentials", ""},
		"kustomize-overlays-dev":                      {"result-postgres-url", "postgres-url", "voting-credentials-", ""},
		"kustomize-overlays-prod":                     {"result-postgres-url", "postgres-url", "voting-credentials", ""},
		"kustomize-tests-dev-all-components":          {"result-postgres-url", "postgres-url", "voting-credentials-", ""},
		"kustomize-tests-read-only-result":            {"result-postgres-url", "postgres-url", "voting-credentials-", devReader},
		"kustomize-tests-external-postgres":           {"url", "url", "voting-external-postgres-", ""},
		"kustomize-tests-external-both":               {"url", "url", "voting-external-postgres-", ""},
		"kustomize-tests-external-postgres-read-only": {"result-url", "url", "voting-external-postgres-", readerURL},
		"helm-defaults":                               {"", "", "", ""},
		"helm-dev":                                    {"", "", "", ""},
		"helm-prod":                                   {"", "", "", ""},
		"helm-bitnami":                                {"", "", "", ""},
		"helm-external-url":                           {"postgres-url", "postgres-url", "voting-credentials", ""},
		"helm-external-secret":                        {"postgres-url", "postgres-url", "voting-datastores", ""},
	}
	for name, want := range targets {
		checkResultURL(t, name, target(t, name).Objects, want)
	}

	chart := root + "/deploy/helm/voting"
	values := root + "/deploy/helm/values/"
	// Extra values go in a second file: Helm merges files key by key, as users layer them.
	reader := valuesFile(t, "postgres:\n  external:\n    resultUrl: "+readerURL+"\n")
	helm := []struct {
		name  string
		files []string
		want  resultURLWant
	}{
		{"in-cluster + resultUrl", []string{reader}, resultURLWant{"result-postgres-url", "", "voting-credentials", readerURL}},
		{"external-url + resultUrl", []string{values + "external-url.yaml", reader},
			resultURLWant{"result-postgres-url", "postgres-url", "voting-credentials", readerURL}},
		{"bitnami + resultUrl", []string{values + "bitnami.yaml", reader},
			resultURLWant{"result-postgres-url", "", "voting-credentials", readerURL}},
		{"external-secret + resultUrlKey", []string{values + "external-secret.yaml",
			valuesFile(t, "postgres:\n  external:\n    resultUrlKey: reader-url\n")},
			resultURLWant{"reader-url", "postgres-url", "voting-datastores", "secret voting-datastores/reader-url"}},
	}
	for _, c := range helm {
		out, err := render.RenderHelm(chart, c.files, nil)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		objs, err := decodeStrict(out)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		checkResultURL(t, c.name, objs, c.want)
		notes, err := render.HelmNotes(chart, c.files, nil)
		if err != nil {
			t.Errorf("%s: NOTES: %v", c.name, err)
		} else if !strings.Contains(notes, "result connects with its own PostgreSQL URL") {
			t.Errorf("%s: NOTES do not say that result has its own URL:\n%s", c.name, notes)
		}
	}
}

// TestResultURLMeansTheSameInBoth renders the read-only setup both ways (the kustomize test
// combination and the Helm dev values with resultUrl) and checks they connect result and the
// writers alike: result as the reader, migrate and worker as the writer.
func TestResultURLMeansTheSameInBoth(t *testing.T) {
	const devReader = "postgres://voting_reader:example@postgres:5432/voting?sslmode=disable"
	k := target(t, "kustomize-tests-read-only-result").Objects
	out, err := render.RenderHelm(root+"/deploy/helm/voting", []string{root + "/deploy/helm/values/dev.yaml",
		valuesFile(t, "postgres:\n  external:\n    resultUrl: "+devReader+"\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeStrict(out)
	if err != nil {
		t.Fatal(err)
	}
	kr, kw := postgresURLs(t, "kustomize", k)
	hr, hw := postgresURLs(t, "helm", h)
	if kr.URL != devReader || hr.URL != devReader {
		t.Errorf("result connects to %q (kustomize) and %q (helm), want %q", kr.URL, hr.URL, devReader)
	}
	if len(kw) != len(hw) {
		t.Errorf("%d writer containers in kustomize, %d in helm: %v vs %v", len(kw), len(hw), kw, hw)
	}
}

// TestHelmRefusesMisplacedResultURL checks that resultUrl and resultUrlKey are refused where
// they would be ignored, and that the schema refuses a URL of another database.
func TestHelmRefusesMisplacedResultURL(t *testing.T) {
	chart := root + "/deploy/helm/voting"
	ext := func(m map[string]any) map[string]any {
		return map[string]any{"postgres": map[string]any{"enabled": false, "external": m}}
	}
	cases := map[string]struct {
		set  map[string]any
		want string
	}{
		"resultUrlKey without existingSecret": {ext(map[string]any{"url": "postgres://p/db", "resultUrlKey": "k"}), "resultUrlKey"},
		"resultUrlKey in-cluster":             {map[string]any{"postgres": map[string]any{"external": map[string]any{"resultUrlKey": "k"}}}, "resultUrlKey"},
		"resultUrl with existingSecret":       {ext(map[string]any{"existingSecret": "s", "resultUrl": readerURL}), "resultUrlKey"},
		"resultUrl not PostgreSQL":            {ext(map[string]any{"url": "postgres://p/db", "resultUrl": "mysql://r/db"}), "resultUrl"},
	}
	for name, c := range cases {
		if _, err := render.RenderHelm(chart, nil, c.set); err == nil {
			t.Errorf("%s: rendered without error", name)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error does not name %s: %v", name, c.want, err)
		}
	}
}

// valuesFile writes a Helm values file for one test and returns its path.
func valuesFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
