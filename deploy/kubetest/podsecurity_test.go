package kubetest

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// pinnedVersion is the Pod Security version the namespace pins (deploy/k8s/base/namespace.yaml).
const pinnedVersion = "v1.37"

func newEvaluator(t *testing.T) policy.Evaluator {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// evaluate runs the Pod Security "restricted" checks at a version and returns the reasons a
// pod is refused ("" when it is allowed).
func evaluate(t *testing.T, ev policy.Evaluator, version string, p podTemplate) string {
	t.Helper()
	v := api.LatestVersion()
	if version != "latest" {
		var err error
		if v, err = api.ParseVersion(version); err != nil {
			t.Fatal(err)
		}
	}
	res := policy.AggregateCheckResults(ev.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: v}, &p.Meta, &p.Spec))
	if res.Allowed {
		return ""
	}
	return res.ForbiddenReason() + ": " + res.ForbiddenDetail()
}

// TestPodSecurityRestricted evaluates every pod template of every target with the Pod Security
// admission's own code, at "latest" and at the namespace's pinned version.
func TestPodSecurityRestricted(t *testing.T) {
	ev := newEvaluator(t)
	count := 0
	for _, r := range renderAll(t) {
		pods := podTemplates(r.Objects)
		if len(pods) == 0 {
			t.Errorf("%s: no pod templates", r.Name)
		}
		for _, p := range pods {
			count++
			for _, version := range []string{"latest", pinnedVersion} {
				if reason := evaluate(t, ev, version, p); reason != "" {
					t.Errorf("%s: %s violates restricted:%s: %s", r.Name, p.Owner, version, reason)
				}
			}
		}
	}
	t.Logf("%d pod templates pass restricted", count)
}

// TestPodSecurityEvaluatorRefusesViolations proves the check above can fail: each mutation of
// a real pod template must be refused.
func TestPodSecurityEvaluatorRefusesViolations(t *testing.T) {
	ev := newEvaluator(t)
	var vote podTemplate
	for _, p := range podTemplates(target(t, "kustomize-base").Objects) {
		if p.Meta.Labels["app.kubernetes.io/component"] == "vote" {
			vote = p
		}
	}
	if vote.Owner == "" {
		t.Fatal("no vote pod in kustomize-base")
	}
	if reason := evaluate(t, ev, "latest", vote); reason != "" {
		t.Fatalf("unmodified vote pod refused: %s", reason)
	}
	mutations := map[string]func(*corev1.PodSpec){
		"root user": func(s *corev1.PodSpec) {
			zero := int64(0)
			s.SecurityContext.RunAsUser = &zero
		},
		"privilege escalation": func(s *corev1.PodSpec) {
			yes := true
			s.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
		},
		"capabilities kept": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil },
		"no seccomp":        func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil },
		"host network":      func(s *corev1.PodSpec) { s.HostNetwork = true },
		"hostPath volume": func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
	}
	for name, mutate := range mutations {
		p := vote
		p.Spec = *vote.Spec.DeepCopy()
		mutate(&p.Spec)
		if evaluate(t, ev, "latest", p) == "" {
			t.Errorf("%s: allowed", name)
		}
	}
}

// TestNamespaceEnforcesRestricted checks the namespace labels of every kustomization.
func TestNamespaceEnforcesRestricted(t *testing.T) {
	for _, r := range renderAll(t) {
		if !strings.HasPrefix(r.Name, "kustomize-") {
			continue
		}
		nss := ofKind[*corev1.Namespace](r.Objects)
		if len(nss) != 1 {
			t.Errorf("%s: %d Namespaces, want 1", r.Name, len(nss))
			continue
		}
		for _, mode := range []string{"enforce", "audit", "warn"} {
			l := nss[0].Labels
			if l["pod-security.kubernetes.io/"+mode] != "restricted" || l["pod-security.kubernetes.io/"+mode+"-version"] != pinnedVersion {
				t.Errorf("%s: namespace %s labels %v: want %s=restricted at %s", r.Name, nss[0].Name, l, mode, pinnedVersion)
			}
		}
	}
}

// TestPodHardening checks what the issue asks of every pod beyond Pod Security: fixed non-root
// UIDs, read-only root filesystems, no service-account token, requests and limits, and for
// the app's containers no GOMEMLIMIT (the binary sets 80% of the memory limit itself), httpGet probes on the admin port, the
// right datastore URLs, and a grace period longer than drain + shutdown.
func TestPodHardening(t *testing.T) {
	for _, r := range renderAll(t) {
		drain, shutdown := shutdownSettings(t, r)
		for _, p := range podTemplates(r.Objects) {
			where := r.Name + ": " + p.Owner
			s := p.Spec
			if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken is not false", where)
			}
			psc := s.SecurityContext
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("%s: pod needs runAsNonRoot and a fixed non-zero runAsUser", where)
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
			}
			component := p.Meta.Labels["app.kubernetes.io/component"]
			app := contains(appComponents, component)
			// Service links would inject variables such as VOTING_VOTE_PORT for a Service named
			// voting-vote: the VOTING_ prefix is the app's configuration namespace.
			if app && (s.EnableServiceLinks == nil || *s.EnableServiceLinks) {
				t.Errorf("%s: enableServiceLinks is not false", where)
			}
			if app && *psc.RunAsUser != 65532 {
				t.Errorf("%s: runAsUser %d, want 65532", where, *psc.RunAsUser)
			}
			if app {
				grace := time.Duration(*s.TerminationGracePeriodSeconds) * time.Second
				if grace <= drain+shutdown {
					t.Errorf("%s: terminationGracePeriodSeconds %v is not longer than drain %v + shutdown %v", where, grace, drain, shutdown)
				}
			}
			all := append(append([]corev1.Container{}, s.InitContainers...), s.Containers...)
			for i, c := range all {
				init := i < len(s.InitContainers)
				cw := where + "/" + c.Name
				sc := c.SecurityContext
				if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s: root filesystem is not read-only", cw)
				}
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
					t.Errorf("%s: needs cpu and memory requests and a memory limit", cw)
				}
				if !init && component != "test" && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
					t.Errorf("%s: needs liveness and readiness probes", cw)
				}
				if !isAppImage(c.Image) {
					continue
				}
				if hasEnv(c, "GOMEMLIMIT") {
					t.Errorf("%s: sets GOMEMLIMIT; the binary takes 80%% of the memory limit itself (cmd/voting/memlimit.go), and a GOMEMLIMIT set here would win", cw)
				}
				if !hasEnvFromConfig(c) {
					t.Errorf("%s: settings ConfigMap not in envFrom", cw)
				}
				need := map[string]bool{}
				switch {
				case init:
					need["VOTING_POSTGRES_URL"] = true
				case component == "vote":
					need["VOTING_REDIS_URL"] = true
				case component == "result":
					need["VOTING_POSTGRES_URL"] = true
				case component == "worker":
					need["VOTING_REDIS_URL"], need["VOTING_POSTGRES_URL"] = true, true
				}
				for _, e := range c.Env {
					delete(need, e.Name)
				}
				for name := range need {
					t.Errorf("%s: no %s", cw, name)
				}
				if init {
					if len(c.Args) == 0 || c.Args[0] != "migrate" {
						t.Errorf("%s: initContainer args %v, want migrate", cw, c.Args)
					}
					continue
				}
				checkProbe(t, cw+" liveness", c.LivenessProbe, "/livez")
				checkProbe(t, cw+" readiness", c.ReadinessProbe, "/readyz")
				if !hasPort(c, "admin", 9090) {
					t.Errorf("%s: no admin port 9090", cw)
				}
			}
			if contains([]string{"result", "worker"}, component) && (len(s.InitContainers) != 1 || s.InitContainers[0].Name != "migrate") {
				t.Errorf("%s: no migrate initContainer", where)
			}
		}
	}
}

func shutdownSettings(t *testing.T, r renderedTarget) (drain, shutdown time.Duration) {
	t.Helper()
	for _, cm := range ofKind[*corev1.ConfigMap](r.Objects) {
		if !strings.HasPrefix(cm.Name, "voting-config") {
			continue
		}
		var err error
		if drain, err = time.ParseDuration(cm.Data["VOTING_DRAIN_DELAY"]); err != nil {
			t.Fatalf("%s: VOTING_DRAIN_DELAY: %v", r.Name, err)
		}
		if shutdown, err = time.ParseDuration(cm.Data["VOTING_SHUTDOWN_TIMEOUT"]); err != nil {
			t.Fatalf("%s: VOTING_SHUTDOWN_TIMEOUT: %v", r.Name, err)
		}
		return drain, shutdown
	}
	t.Fatalf("%s: no voting-config ConfigMap", r.Name)
	return 0, 0
}

func checkProbe(t *testing.T, where string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: not an httpGet probe", where)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("%s: probes %s on port %s, want %s on admin", where, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

func hasEnv(c corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}

func hasEnvFromConfig(c corev1.Container) bool {
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil && strings.HasPrefix(e.ConfigMapRef.Name, "voting-config") {
			return true
		}
	}
	return false
}

func hasPort(c corev1.Container, name string, port int32) bool {
	for _, p := range c.Ports {
		if p.Name == name && p.ContainerPort == port {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDatastoresPersist checks that every in-cluster Redis and PostgreSQL is a StatefulSet
// with a volume claim template mounted where the data lives, and that Redis runs with the
// append-only file.
func TestDatastoresPersist(t *testing.T) {
	for _, r := range renderAll(t) {
		for _, ss := range ofKind[*appsv1.StatefulSet](r.Objects) {
			where := r.Name + ": StatefulSet/" + ss.Name
			if len(ss.Spec.VolumeClaimTemplates) != 1 || ss.Spec.VolumeClaimTemplates[0].Name != "data" {
				t.Errorf("%s: want one volumeClaimTemplate named data", where)
				continue
			}
			c := ss.Spec.Template.Spec.Containers[0]
			mounts := map[string]string{}
			for _, m := range c.VolumeMounts {
				mounts[m.Name] = m.MountPath
			}
			switch ss.Spec.Template.Labels["app.kubernetes.io/name"] {
			case "redis":
				args := strings.Join(c.Args, " ")
				if !strings.Contains(args, "--dir /data") || !strings.Contains(args, "--appendonly yes") || !strings.Contains(args, "--appendfsync") {
					t.Errorf("%s: Redis without AOF in /data: %s", where, args)
				}
				checkMaxmemory(t, where, c)
				if mounts["data"] != "/data" {
					t.Errorf("%s: data volume at %q", where, mounts["data"])
				}
			case "postgresql":
				if mounts["data"] != "/var/lib/postgresql/data" {
					t.Errorf("%s: data volume at %q", where, mounts["data"])
				}
			default:
				t.Errorf("%s: unexpected StatefulSet", where)
			}
		}
	}
}

// checkMaxmemory: Redis refuses votes (noeviction) rather than grow to its container's limit
// and be OOM-killed, and its maxmemory leaves about half the limit for the AOF rewrite's fork
// and client buffers.
func checkMaxmemory(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	arg := func(name string) string {
		if i := slices.Index(c.Args, name); i >= 0 && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
		return ""
	}
	if p := arg("--maxmemory-policy"); p != "noeviction" {
		t.Errorf("%s: --maxmemory-policy %q, want noeviction (a full queue refuses votes, never drops them)", where, p)
	}
	m := regexp.MustCompile(`^([0-9]+)(b|kb|mb|gb)?$`).FindStringSubmatch(arg("--maxmemory"))
	if m == nil {
		t.Errorf("%s: --maxmemory %q, want a size such as 128mb", where, arg("--maxmemory"))
		return
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	n <<= map[string]int{"": 0, "b": 0, "kb": 10, "mb": 20, "gb": 30}[m[2]]
	limit := c.Resources.Limits.Memory().Value()
	if n <= 0 || limit <= 0 || float64(n) > 0.55*float64(limit) {
		t.Errorf("%s: --maxmemory %s is more than about half the %d-byte memory limit", where, m[0], limit)
	}
}
