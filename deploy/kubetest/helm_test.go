package kubetest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// TestHelmNotes checks that NOTES.txt renders for the main setups and tells users what they
// need: the Pod Security label, how to reach the pages, and `helm test`.
func TestHelmNotes(t *testing.T) {
	chart := root + "/deploy/helm/voting"
	cases := map[string]struct {
		files []string
		want  []string
	}{
		"defaults": {nil, []string{"enforce=restricted", "port-forward svc/voting-vote 8080:80", "helm test voting"}},
		"prod": {[]string{root + "/deploy/helm/values/prod.yaml"}, []string{"http://vote.voting.example.com/",
			"Gateway voting (GatewayClass traefik", `{"app.kubernetes.io/name":"traefik"}`}},
		"shared-gateway": {[]string{root + "/deploy/helm/values/shared-gateway.yaml"}, []string{
			"Gateway gateway-system/shared-gateway (listener http)", "admit routes from namespace voting"}},
		"ingress-nginx": {[]string{root + "/deploy/helm/values/ingress-nginx.yaml"}, []string{
			"(Ingress, class nginx)", `{"app.kubernetes.io/name":"ingress-nginx"}`, `{"app.kubernetes.io/name":"traefik"}`}},
		"bitnami": {[]string{root + "/deploy/helm/values/bitnami.yaml"}, []string{"redis-master:6379", "postgresql:5432"}},
	}
	for name, c := range cases {
		notes, err := render.HelmNotes(chart, c.files, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(notes, w) {
				t.Errorf("%s: NOTES lack %q:\n%s", name, w, notes)
			}
		}
	}
}

// TestHelmTestPod checks the `helm test` hook: a Pod that votes for the poll's first option
// through the vote Service and reads the tally from the result Service.
func TestHelmTestPod(t *testing.T) {
	for _, name := range []string{"helm-defaults", "helm-prod", "helm-bitnami"} {
		r := target(t, name)
		var pod *corev1.Pod
		for _, p := range ofKind[*corev1.Pod](r.Objects) {
			if p.Annotations["helm.sh/hook"] == "test" {
				pod = p
			}
		}
		if pod == nil {
			t.Errorf("%s: no helm test Pod", name)
			continue
		}
		env := map[string]string{}
		for _, e := range pod.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		want := map[string]string{
			"VOTE_URL":   "http://voting-vote:80/",
			"RESULT_URL": "http://voting-result:80/api/results",
			"OPTION":     "a",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: test pod %s=%q, want %q", name, k, env[k], v)
			}
		}
		script := strings.Join(pod.Spec.Containers[0].Command, " ")
		for _, w := range []string{`--post-data "vote=$OPTION"`, `"total"`, "exit 1"} {
			if !strings.Contains(script, w) {
				t.Errorf("%s: test script lacks %s", name, w)
			}
		}
		if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("%s: test pod restartPolicy %q", name, pod.Spec.RestartPolicy)
		}
	}
}

// TestHelmPasswordsStable: with existingSecret for both datastores and the voter key, two
// `helm template` runs give the same manifests (GitOps tools then see no change), no Secret
// of the chart carries a password, and every container reads the passwords from the named
// Secrets. Without them, the generated credentials Secret is kept on uninstall, like the
// voter key's, so that a reinstall over the kept volumes can log in.
func TestHelmPasswordsStable(t *testing.T) {
	chart := root + "/deploy/helm/voting"
	set := map[string]any{
		"redis":    map[string]any{"existingSecret": "my-redis", "existingSecretKey": "pw"},
		"postgres": map[string]any{"existingSecret": "my-postgres"},
		"voterKey": map[string]any{"existingSecret": "my-voter-key"},
	}
	first, err := render.RenderHelm(chart, nil, set)
	if err != nil {
		t.Fatal(err)
	}
	second, err := render.RenderHelm(chart, nil, set)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Errorf("two renderings with existingSecret differ: a GitOps tool would roll the passwords")
	}
	objs, err := decodeStrict(first)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ofKind[*corev1.Secret](objs) {
		for k := range s.Data {
			if strings.HasSuffix(k, "-password") || k == "keys" {
				t.Errorf("Secret %s carries %s although existingSecret names it", s.Name, k)
			}
		}
	}
	want := map[string]string{"REDIS_PASSWORD": "my-redis/pw", "POSTGRES_PASSWORD": "my-postgres/postgres-password"}
	refs := 0
	for _, p := range podTemplates(objs) {
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, e := range c.Env {
				w, ok := want[e.Name]
				if !ok {
					continue
				}
				refs++
				if r := e.ValueFrom.SecretKeyRef; r == nil || r.Name+"/"+r.Key != w {
					t.Errorf("%s/%s: %s from %v, want %s", p.Owner, c.Name, e.Name, e.ValueFrom, w)
				}
			}
		}
	}
	if refs < 4 {
		t.Errorf("only %d password references found", refs)
	}

	for _, s := range ofKind[*corev1.Secret](target(t, "helm-defaults").Objects) {
		if s.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("helm-defaults: Secret %s is not kept on uninstall (helm.sh/resource-policy: keep)", s.Name)
		}
	}
}
