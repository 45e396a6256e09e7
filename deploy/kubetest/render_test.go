package kubetest

import (
	"strings"
	"testing"

	cnpgv1 "github.com/cloudnative-pg/api/pkg/api/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// TestEveryTargetRendersAndDecodesStrictly renders every kustomization and Helm values file
// and decodes every object into its API type, failing on unknown or duplicate fields.
func TestEveryTargetRendersAndDecodesStrictly(t *testing.T) {
	targets := renderAll(t)
	names := map[string]bool{}
	for _, r := range targets {
		names[r.Name] = true
		t.Logf("%s: %d objects", r.Name, len(r.Objects))
		for _, o := range r.Objects {
			if r.Kind == render.Kustomize && o.Kind != "Namespace" && o.Namespace != render.Namespace {
				t.Errorf("%s: %s is in namespace %q, want %q", r.Name, o, o.Namespace, render.Namespace)
			}
		}
	}
	// The targets the other tests rely on must exist, so that deleting one fails loudly.
	for _, want := range []string{
		"kustomize-base", "kustomize-overlays-dev", "kustomize-overlays-prod",
		"kustomize-tests-dev-all-components", "kustomize-tests-external-redis",
		"kustomize-tests-external-postgres", "kustomize-tests-external-both",
		"kustomize-tests-read-only-result", "kustomize-tests-external-postgres-read-only",
		"kustomize-tests-shared-gateway", "kustomize-tests-ingress-nginx", "kustomize-tests-argo-rollouts",
		"kustomize-tests-image-policy", "kustomize-tests-image-policy-key",
		"helm-defaults", "helm-dev", "helm-prod", "helm-bitnami", "helm-external-url", "helm-external-secret",
		"helm-shared-gateway", "helm-ingress-nginx", "helm-image-policy",
	} {
		if !names[want] {
			t.Errorf("target %s was not rendered", want)
		}
	}
}

// TestStrictDecodingCatchesMistakes proves that the decoder used above fails on a misspelt
// field and on a duplicate key, so a passing render means something.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  prots: []\n",
		"duplicate key": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  name: y\n",
		"wrong type":    "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports: 80\n",
		// The Gateway API types are decoded as strictly as the built-in ones.
		"unknown HTTPRoute field": "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: x\n" +
			"spec:\n  rules:\n    - timeouts:\n        idle: 0s\n",
		"misspelt Gateway field": "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: x\n" +
			"spec:\n  gatewayClassName: traefik\n  listener: []\n",
		"unknown API group version": "apiVersion: gateway.networking.k8s.io/v9\nkind: HTTPRoute\nmetadata:\n  name: x\n",
		// And Argo Rollouts' (components/argo-rollouts).
		"misspelt Rollout field": "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: x\n" +
			"spec:\n  strategy:\n    canary:\n      step: []\n",
		"misspelt AnalysisTemplate field": "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: x\n" +
			"spec:\n  metrics:\n    - name: m\n      successCondtion: \"true\"\n",
		// And policy-controller's (components/image-policy).
		"misspelt ClusterImagePolicy field": "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: x\n" +
			"spec:\n  images:\n    - glob: \"a:*\"\n  authorities:\n    - name: k\n      keyless:\n        identities:\n" +
			"          - issuer: i\n            subjectRegex: s\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestHelmLintStrict runs Helm's linter (helm lint --strict) with the defaults and with every
// values file.
func TestHelmLintStrict(t *testing.T) {
	targets, err := render.Targets(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Kind != render.Helm {
			continue
		}
		if err := render.Lint(tg.Path, tg.ValueFiles); err != nil {
			t.Errorf("%s: %v", tg.Name, err)
		}
	}
}

// TestHelmSchemaRejectsMistakes checks that values.schema.json refuses unknown keys at every
// level, bad enums and wrong types, in both template and lint.
func TestHelmSchemaRejectsMistakes(t *testing.T) {
	chart := root + "/deploy/helm/voting"
	cases := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"unknown top-level key", map[string]any{"replicaCount": 2}, "replicaCount"},
		{"unknown nested key", map[string]any{"vote": map[string]any{"replica": 2}}, "replica"},
		{"unknown key deep down", map[string]any{"redis": map[string]any{"external": map[string]any{"hots": "x"}}}, "hots"},
		{"unknown security context field", map[string]any{"securityContext": map[string]any{"readOnlyRootFS": true}}, "readOnlyRootFS"},
		{"bad pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
		{"bad service type", map[string]any{"vote": map[string]any{"service": map[string]any{"type": "ExternalName"}}}, "type"},
		{"bad log format", map[string]any{"log": map[string]any{"format": "xml"}}, "format"},
		{"bad duration", map[string]any{"drainDelay": "five seconds"}, "drainDelay"},
		{"wrong type", map[string]any{"vote": map[string]any{"replicas": "three"}}, "replicas"},
		{"unknown gateway key", map[string]any{"gateway": map[string]any{"gatewayClassName": "x"}}, "gatewayClassName"},
		{"unknown parentRef key", map[string]any{"gateway": map[string]any{"parentRefs": []any{
			map[string]any{"name": "g", "section": "http"}}}}, "section"},
		{"parentRef without name", map[string]any{"gateway": map[string]any{"parentRefs": []any{
			map[string]any{"namespace": "gw"}}}}, "name"},
		{"bad route timeout", map[string]any{"gateway": map[string]any{"requestTimeout": "15 seconds"}}, "requestTimeout"},
		{"bad listener port", map[string]any{"gateway": map[string]any{"listenerPort": 0}}, "listenerPort"},
		{"version label too long", map[string]any{"versionLabel": "a-version-label-of-thirty-three-c"}, "versionLabel"},
		{"version label not ASCII", map[string]any{"versionLabel": "grün"}, "versionLabel"},
		{"version label with a newline", map[string]any{"versionLabel": "v2\nX-Injected: 1"}, "versionLabel"},
		{"accent colour that is none", map[string]any{"accentColor": "#fff;} body{display:none"}, "accentColor"},
		{"accent colour of four digits", map[string]any{"accentColor": "#abcd"}, "accentColor"},
		{"accent colour name unknown", map[string]any{"accentColor": "lime"}, "accentColor"},
		{"unknown imagePolicy key", map[string]any{"imagePolicy": map[string]any{"enable": true}}, "enable"},
		{"imagePolicy issuer without https", map[string]any{"imagePolicy": map[string]any{"issuer": "http://issuer.example"}}, "issuer"},
		{"imagePolicy glob with a space", map[string]any{"imagePolicy": map[string]any{"unverifiedImages": []any{"redis *"}}}, "unverifiedImages"},
		{"unknown edge selector key", map[string]any{"networkPolicy": map[string]any{"gateway": map[string]any{
			"podLabels": map[string]any{"a": "b"}}}}, "podLabels"},
	}
	for _, c := range cases {
		_, err := render.RenderHelm(chart, nil, c.set)
		if err == nil {
			t.Errorf("%s: rendered without error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error does not name the schema and %q: %v", c.name, c.want, err)
		}
	}
	// The unmodified defaults pass, so the failures above come from the mistakes.
	if _, err := render.RenderHelm(chart, nil, nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// TestHelmRefusesAmbiguousDatastores checks the chart's own validation of the datastore modes.
func TestHelmRefusesAmbiguousDatastores(t *testing.T) {
	chart := root + "/deploy/helm/voting"
	cases := map[string]map[string]any{
		"in-cluster and a URL":        {"redis": map[string]any{"external": map[string]any{"url": "redis://r:6379/0"}}},
		"external without an address": {"postgres": map[string]any{"enabled": false}},
		"two external modes": {"postgres": map[string]any{"enabled": false, "external": map[string]any{
			"url": "postgres://p/db", "existingSecret": "s"}}},
	}
	for name, set := range cases {
		if _, err := render.RenderHelm(chart, nil, set); err == nil {
			t.Errorf("%s: rendered without error", name)
		} else if !strings.Contains(err.Error(), "external") {
			t.Errorf("%s: unclear error: %v", name, err)
		}
	}
}

// TestExternalDatastores checks that the external components and values files remove the
// in-cluster StatefulSets and point every container at the right Secret.
func TestExternalDatastores(t *testing.T) {
	type want struct{ redisSecret, postgresSecret string } // "" = in-cluster
	cases := map[string]want{
		"kustomize-tests-external-redis":              {redisSecret: "voting-external-redis"},
		"kustomize-tests-external-postgres":           {postgresSecret: "voting-external-postgres"},
		"kustomize-tests-external-both":               {"voting-external-redis", "voting-external-postgres"},
		"kustomize-tests-external-postgres-read-only": {postgresSecret: "voting-external-postgres"},
		"helm-external-secret":                        {"voting-datastores", "voting-datastores"},
		"helm-external-url":                           {"voting-credentials", "voting-credentials"},
		"helm-bitnami":                                {"redis", "postgresql"},
	}
	for name, w := range cases {
		r := target(t, name)
		for _, o := range r.Objects {
			if o.Kind == "StatefulSet" && ((w.redisSecret != "" && strings.Contains(o.Name, "redis")) ||
				(w.postgresSecret != "" && strings.Contains(o.Name, "postgres"))) {
				t.Errorf("%s: %s is still there", name, o)
			}
		}
		for _, p := range podTemplates(r.Objects) {
			for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
				if !isAppImage(c.Image) {
					continue
				}
				for _, e := range c.Env {
					var secret string
					switch e.Name {
					case "VOTING_REDIS_URL", "REDIS_PASSWORD":
						secret = w.redisSecret
					case "VOTING_POSTGRES_URL", "POSTGRES_PASSWORD":
						secret = w.postgresSecret
					default:
						continue
					}
					if secret == "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
						continue
					}
					if got := e.ValueFrom.SecretKeyRef.Name; !strings.HasPrefix(got, secret) {
						t.Errorf("%s: %s/%s %s comes from Secret %q, want %q", name, p.Owner, c.Name, e.Name, got, secret)
					}
				}
			}
		}
	}
}

// TestProdShipsNoCredentials: the prod overlay and Helm's prod values carry no password or
// voter key (the development ones are in git for everyone to read); the dev overlay does,
// and says so.
func TestProdShipsNoCredentials(t *testing.T) {
	for _, name := range []string{"kustomize-overlays-prod", "helm-prod"} {
		for _, s := range ofKind[*corev1.Secret](target(t, name).Objects) {
			for k, v := range s.Data {
				if strings.Contains(string(v), "dev-") {
					t.Errorf("%s: Secret %s key %s holds a development value", name, s.Name, k)
				}
			}
		}
	}
	var dev bool
	for _, s := range ofKind[*corev1.Secret](target(t, "kustomize-overlays-dev").Objects) {
		dev = dev || strings.HasPrefix(s.Name, "voting-credentials-") && strings.Contains(string(s.Data["redis-password"]), "dev-")
	}
	if !dev {
		t.Errorf("kustomize-overlays-dev: no development voting-credentials Secret")
	}
}

// TestCloudNativePG: kustomize's components/cloudnative-pg and the chart's
// postgres.cloudnativepg replace the PostgreSQL StatefulSet with a CloudNativePG Cluster, decoded
// strictly with the operator's own API types, and every container that talks to PostgreSQL
// reads the URL the operator puts in <cluster>-app.
func TestCloudNativePG(t *testing.T) {
	for _, name := range []string{"kustomize-tests-cloudnative-pg", "helm-cloudnative-pg"} {
		r := target(t, name)
		clusters := ofKind[*cnpgv1.Cluster](r.Objects)
		if len(clusters) != 1 {
			t.Fatalf("%s: %d CloudNativePG Clusters, want 1", name, len(clusters))
		}
		c := clusters[0]
		// The chart's objects name no namespace (helm install -n gives it); kustomize's do.
		if c.Name != "voting-db" || strings.HasPrefix(name, "kustomize-") && c.Namespace != render.Namespace || c.Spec.Instances < 2 || c.Spec.Bootstrap == nil || c.Spec.Bootstrap.InitDB == nil ||
			c.Spec.Bootstrap.InitDB.Database != "voting" || c.Spec.Bootstrap.InitDB.Owner != "voting" || c.Spec.StorageConfiguration.Size == "" {
			t.Errorf("%s: Cluster %s/%s: want voting-db in %s, 2 or more instances, database and owner voting, storage: %+v", name, c.Namespace, c.Name, render.Namespace, c.Spec)
		}
		for _, o := range r.Objects {
			if o.Kind == "StatefulSet" && strings.HasSuffix(o.Name, "postgres") {
				t.Errorf("%s: the in-cluster PostgreSQL StatefulSet %s is still there", name, o.Name)
			}
		}
		for _, s := range ofKind[*corev1.Secret](r.Objects) {
			if _, ok := s.Data["postgres-password"]; ok {
				t.Errorf("%s: Secret %s holds a PostgreSQL password; the operator makes its own", name, s.Name)
			}
		}
		n := 0
		for _, p := range podTemplates(r.Objects) {
			for _, ct := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
				for _, e := range ct.Env {
					if e.Name != "VOTING_POSTGRES_URL" {
						continue
					}
					n++
					if ref := e.ValueFrom.SecretKeyRef; ref == nil || ref.Name != c.Name+"-app" || ref.Key != "uri" {
						t.Errorf("%s: %s/%s reads VOTING_POSTGRES_URL from %+v, want %s-app key uri", name, p.Owner, ct.Name, e.ValueFrom, c.Name)
					}
				}
			}
		}
		if n < 4 {
			t.Errorf("%s: %d containers read VOTING_POSTGRES_URL, want worker, result and both migrate initContainers", name, n)
		}
	}
	// The chart refuses the Cluster without the in-cluster PostgreSQL it replaces.
	if _, err := render.RenderHelm(root+"/deploy/helm/voting", nil, map[string]any{
		"postgres": map[string]any{"enabled": false, "cloudnativepg": map[string]any{"enabled": true}, "external": map[string]any{"host": "db"}},
	}); err == nil || !strings.Contains(err.Error(), "postgres.enabled=true") {
		t.Errorf("postgres.cloudnativepg.enabled with postgres.enabled=false: err = %v, want the message asking for postgres.enabled=true", err)
	}
}
