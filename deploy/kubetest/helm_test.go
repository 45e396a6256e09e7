package kubetest

import (
	"os/exec"
	"path/filepath"
	"regexp"
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

// TestHelmReachesEveryFlag walks the flags of `voting vote|worker|result|migrate -h` (the
// binary built from this repository) and finds each one reachable from the chart's values:
// set through values, it must reach the settings ConfigMap as its VOTING_* variable; or it is
// one the chart sets itself, from other values, and each container must carry it.
func TestHelmReachesEveryFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the app")
	}
	bin := filepath.Join(t.TempDir(), "voting")
	build := exec.Command("go", "build", "-o", bin, "./cmd/voting")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/voting: %v\n%s", err, out)
	}
	// The chart's own: the ports its containers and probes name (the binary's defaults), and
	// what comes from the datastore and voter key values (as env of the containers).
	byChart := map[string]string{
		"admin-addr": "", "vote-addr": "", "result-addr": "",
		"redis-url": "VOTING_REDIS_URL", "postgres-url": "VOTING_POSTGRES_URL", "voter-key-file": "VOTING_VOTER_KEY_FILE",
	}
	// Each other flag: the values that set it, and what its variable must then read.
	set := map[string]any{
		"options": "x=X,y=Y", "log": map[string]any{"level": "debug", "format": "text"},
		"drainDelay": "7s", "shutdownTimeout": "11s", "stream": "ballots", "pprof": true,
		"trustedProxies": "10.0.0.0/8", "versionLabel": "v2 canary", "accentColor": "#0a7d4f",
		"vote": map[string]any{"rateLimit": 2.5, "rateBurst": 30, "faults": map[string]any{"errorRatio": 0.2, "latency": "150ms"}},
		"worker": map[string]any{"batchSize": 250, "claimTimeout": "45s", "maxDeliveries": 7,
			"faults": map[string]any{"batchDelay": "2s", "stall": true, "exitAfter": 1000}},
		"result": map[string]any{"maxWebsockets": 2000000, "maxWebsocketsPerClient": 50, "pollInterval": "2s",
			"faults": map[string]any{"pushStop": true, "pushDelay": "3s"}},
	}
	want := map[string]string{
		"options": "x=X,y=Y", "log-level": "debug", "log-format": "text", "drain-delay": "7s",
		"shutdown-timeout": "11s", "stream": "ballots", "pprof": "true", "trusted-proxies": "10.0.0.0/8",
		"version-label": "v2 canary", "accent-color": "#0a7d4f",
		"rate-limit": "2.5", "rate-burst": "30", "fault-vote-error-ratio": "0.2", "fault-vote-latency": "150ms",
		"batch-size": "250", "claim-timeout": "45s",
		"fault-worker-batch-delay": "2s", "fault-worker-stall": "true", "fault-worker-exit-after": "1000",
		"fault-result-push-stop": "true", "fault-result-push-delay": "3s",
		"max-deliveries": "7", "max-websockets": "2000000", "max-websockets-per-client": "50", "poll-interval": "2s",
	}
	y, err := render.RenderHelm(root+"/deploy/helm/voting", nil, set)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(y)
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]string
	for _, cm := range ofKind[*corev1.ConfigMap](objs) {
		if strings.HasSuffix(cm.Name, "-config") {
			config = cm.Data
		}
	}
	containers := map[string]corev1.Container{}
	for _, p := range podTemplates(objs) {
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			containers[c.Name] = c
		}
	}
	flagLine := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)
	for _, cmd := range []string{"vote", "worker", "result", "migrate"} {
		out, _ := exec.Command(bin, cmd, "-h").CombinedOutput() // -h exits 2 after the usage
		flags := flagLine.FindAllStringSubmatch(string(out), -1)
		if len(flags) == 0 {
			t.Fatalf("voting %s -h lists no flags:\n%s", cmd, out)
		}
		for _, f := range flags {
			name, variable := f[1], "VOTING_"+strings.ToUpper(strings.ReplaceAll(f[1], "-", "_"))
			if env, ok := byChart[name]; ok {
				if c, ok := containers[cmd]; !ok || env != "" && !hasEnv(c, env) {
					t.Errorf("voting %s --%s: the chart does not set %s", cmd, name, env)
				}
				continue
			}
			w, ok := want[name]
			if !ok {
				t.Errorf("voting %s --%s: no Helm value sets it (add one to values.yaml, its schema and this test)", cmd, name)
				continue
			}
			if config[variable] != w {
				t.Errorf("voting %s --%s: ConfigMap %s = %q, want %q", cmd, name, variable, config[variable], w)
			}
		}
	}
}
