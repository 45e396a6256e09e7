package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// A flow is one connection a check opens from inside a pod.
type flow struct {
	name   string
	from   string // "vote", "worker", "result" (an ephemeral probe container in that pod), "stray", "other"
	target string // host:port, or "dns:<name>" for a lookup
	allow  bool   // what the policies must do
}

// probe is a busybox container that the checks run commands in, inside a pod's network
// namespace: an ephemeral container (kubectl debug --profile=restricted) in an app pod, so
// the pod's own labels and policies apply, or a pod of its own.
type probe struct{ ns, pod, container string }

func (k *Checker) exec(ctx context.Context, p probe, script string) (string, error) {
	return k.Kubectl(ctx, "-n", p.ns, "exec", p.pod, "-c", p.container, "--", "sh", "-c", script)
}

// attachProbe adds an ephemeral probe container to pod and waits until it runs.
func (k *Checker) attachProbe(ctx context.Context, ns, pod string) (probe, error) {
	name := fmt.Sprintf("probe-%d", time.Now().UnixNano()%1e6)
	if _, err := k.Kubectl(ctx, "-n", ns, "debug", pod, "--image", k.ProbeImage, "--image-pull-policy", "Never",
		"--profile", "restricted", "--container", name, "--", "sleep", "3600"); err != nil {
		return probe{}, err
	}
	p := probe{ns, pod, name}
	return p, poll(ctx, "probe container "+name+" in "+pod+" running", time.Minute, 500*time.Millisecond, func() error {
		var po corev1.Pod
		if err := k.getJSON(ctx, &po, "-n", ns, "get", "pod", pod); err != nil {
			return err
		}
		for _, s := range po.Status.EphemeralContainerStatuses {
			if s.Name == name && s.State.Running != nil {
				return nil
			}
		}
		return fmt.Errorf("not running yet")
	})
}

// probePod starts a pod of its own (labels: app=<name>) running the probe image in ns.
func (k *Checker) probePod(ctx context.Context, ns, name string) (probe, error) {
	_, err := k.applyYAML(ctx, `apiVersion: v1
kind: Pod
metadata: {name: `+name+`, namespace: `+ns+`, labels: {app: `+name+`}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: probe
      image: `+k.ProbeImage+`
      imagePullPolicy: Never
      command: ["sleep", "3600"]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`)
	if err != nil {
		return probe{}, err
	}
	_, err = k.Kubectl(ctx, "-n", ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s")
	return probe{ns, name, "probe"}, err
}

// try opens the flow once and says whether it connected, and what happened.
func (k *Checker) try(ctx context.Context, p probe, target string) (bool, string) {
	if name, ok := strings.CutPrefix(target, "dns:"); ok {
		out, err := k.exec(ctx, p, "nslookup "+name+" 2>&1")
		if err != nil {
			return false, "lookup failed: " + lastLines(strings.TrimSpace(out+" "+err.Error()), 1)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "Address") && !strings.Contains(l, "#53") && !strings.Contains(l, ":53") {
				return true, "resolved " + strings.TrimSpace(l)
			}
		}
		return false, "no answer: " + lastLines(strings.TrimSpace(out), 2)
	}
	host, port, _ := strings.Cut(target, ":")
	out, err := k.exec(ctx, p, fmt.Sprintf("nc -w 3 %s %s </dev/null 2>&1 && echo connected", host, port))
	if err == nil && strings.Contains(out, "connected") {
		return true, "connected"
	}
	msg := strings.TrimSpace(out)
	switch {
	case strings.Contains(msg, "refused"):
		msg = "connection refused"
	case strings.Contains(msg, "timed out"):
		msg = "timed out"
	case msg == "":
		msg = fmt.Sprint(err)
	}
	return false, msg
}

// CheckPolicies is check 4: the app's NetworkPolicies enforced, probed from inside pods.
// Allowed flows connect; denied ones fail (refused or timed out). Then the policies are
// removed and the denied flows must connect, so the check can fail.
func (k *Checker) CheckPolicies(ctx context.Context, ns string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		a, err := k.discover(ctx, ns)
		if err != nil {
			return err
		}
		svc := func(role string) string { return a.services[role].Name + "." + ns + ".svc.cluster.local" }
		podIP := func(role string) string { return a.pods[role][0].Status.PodIP }
		const other = "voting-probe-other"
		if err := k.restrictedNamespace(ctx, other); err != nil {
			return err
		}
		probes := map[string]probe{}
		for _, role := range []string{"vote", "worker", "result"} {
			p, err := k.attachProbe(ctx, ns, a.pods[role][0].Name)
			if err != nil {
				return err
			}
			probes[role] = p
		}
		if probes["stray"], err = k.probePod(ctx, ns, "stray"); err != nil {
			return err
		}
		if probes["other"], err = k.probePod(ctx, other, "outsider"); err != nil {
			return err
		}
		flows := []flow{
			{"vote → Redis", "vote", svc("redis") + ":6379", true},
			{"worker → Redis", "worker", svc("redis") + ":6379", true},
			{"worker → PostgreSQL", "worker", svc("postgres") + ":5432", true},
			{"result → PostgreSQL", "result", svc("postgres") + ":5432", true},
			{"vote → DNS", "vote", "dns:" + svc("redis"), true},
			{"worker → DNS", "worker", "dns:" + svc("postgres"), true},
			{"result → DNS", "result", "dns:" + svc("postgres"), true},
			{"vote → PostgreSQL", "vote", svc("postgres") + ":5432", false},
			{"result → Redis", "result", svc("redis") + ":6379", false},
			{"stray pod → Redis", "stray", svc("redis") + ":6379", false},
			{"stray pod → PostgreSQL", "stray", svc("postgres") + ":5432", false},
			{"stray pod → vote :8080", "stray", podIP("vote") + ":8080", false},
			{"stray pod → result :8081", "stray", podIP("result") + ":8081", false},
			{"stray pod → worker admin :9090", "stray", podIP("worker") + ":9090", false},
			{"other namespace → vote admin :9090", "other", podIP("vote") + ":9090", false},
			{"other namespace → result admin :9090", "other", podIP("result") + ":9090", false},
			{"vote → outside " + k.Outside, "vote", k.Outside, false},
			{"worker → outside " + k.Outside, "worker", k.Outside, false},
			{"result → outside " + k.Outside, "result", k.Outside, false},
		}
		var bad []string
		for _, f := range flows {
			ok, msg := k.try(ctx, probes[f.from], f.target)
			verdict := "denied"
			if ok {
				verdict = "allowed"
			}
			mark := "ok"
			if ok != f.allow {
				mark = "WRONG"
				bad = append(bad, f.name)
			}
			saw = append(saw, fmt.Sprintf("%-5s %-40s %s (%s)", mark, f.name, verdict, msg))
		}
		if len(bad) > 0 {
			return fmt.Errorf("flows not as the policies say: %s", strings.Join(bad, "; "))
		}
		// Without the policies the denied flows connect: the denials above were the policies'.
		out, err := k.Kubectl(ctx, "-n", ns, "get", "networkpolicies", "-o", "name")
		if err != nil {
			return err
		}
		pols := strings.Fields(out)
		saw = append(saw, fmt.Sprintf("removing the %d NetworkPolicies of %s", len(pols), ns))
		// This check runs last on a deployment: nothing after it needs the policies back.
		if _, err := k.Kubectl(ctx, "-n", ns, "delete", "networkpolicies", "--all"); err != nil {
			return err
		}
		time.Sleep(3 * time.Second) // kube-router syncs a policy change in about a second
		for _, f := range flows {
			if f.allow {
				continue
			}
			var ok bool
			var msg string
			_ = poll(ctx, f.name+" without policies", 20*time.Second, time.Second, func() error {
				if ok, msg = k.try(ctx, probes[f.from], f.target); !ok {
					return fmt.Errorf("%s", msg)
				}
				return nil
			})
			mark := "ok"
			if !ok {
				mark = "WRONG"
				bad = append(bad, f.name+" (without policies)")
			}
			saw = append(saw, fmt.Sprintf("%-5s %-40s without policies: %s", mark, f.name, msg))
		}
		if len(bad) > 0 {
			return fmt.Errorf("flows that still fail without the policies (so not the policies' doing): %s", strings.Join(bad, "; "))
		}
		return nil
	}()
	_, _ = k.Kubectl(ctx, "-n", ns, "delete", "pod", "stray", "--ignore-not-found", "--wait=false")
	_ = k.deleteNamespace(ctx, "voting-probe-other")
	return k.result("4. NetworkPolicies enforced (probed from inside pods), and the denials are theirs", t, strings.Join(saw, "\n"), err)
}
