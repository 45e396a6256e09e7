package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/votingapp/voting/deploy/kubetest/supplychain"
)

// Checker runs the checks of `make e2e-cluster` against a running cluster: this machine's
// (Cluster) or another, such as kind's in GitHub Actions. Each check prints what it saw and
// counts as failed otherwise; Failed lists them.
type Checker struct {
	// Kubectl runs kubectl against the cluster.
	Kubectl func(ctx context.Context, args ...string) (string, error)
	// Kubeconfig is the cluster's admin kubeconfig (for the Helm SDK).
	Kubeconfig string
	// Root is the repository's top directory.
	Root string
	// Voting is the voting binary (its loadgen casts the votes from this machine).
	Voting string
	// Gateway is the host:port where the Gateway's listener is reached from this machine.
	Gateway string
	// Outside is ip:port of an HTTP server outside the cluster that pods can route to, for
	// the egress check; it must be on this machine.
	Outside string
	// Chart, when set, is where the Helm deployment installs the chart from (an OCI
	// registry, as users do); otherwise from deploy/helm/voting.
	Chart *supplychain.Chart
	// ProbeImage is an image with busybox (nc, nslookup, wget, sleep) whose user is not root.
	ProbeImage string
	// Work is where the check writes its files.
	Work string
	// Healthy reports the node components and add-ons that the cluster itself knows about
	// (processes on this machine); nil when there are none to report.
	Healthy func(ctx context.Context) (string, error)
	Out     io.Writer

	failed []string
	passed int
}

// Failed names the checks that failed.
func (k *Checker) Failed() []string { return k.failed }

// Passed counts the checks that passed.
func (k *Checker) Passed() int { return k.passed }

// result prints one check's outcome: "ok" with what it saw, or "FAIL" with why.
func (k *Checker) result(name string, t time.Time, saw string, err error) bool {
	d := time.Since(t).Seconds()
	if err != nil {
		k.failed = append(k.failed, name)
		fmt.Fprintf(k.Out, "FAIL %s (%.0fs): %v\n", name, d, err)
		if saw != "" {
			fmt.Fprintf(k.Out, "     saw: %s\n", indent(saw))
		}
		return false
	}
	k.passed++
	fmt.Fprintf(k.Out, "ok   %s (%.0fs)\n     %s\n", name, d, indent(saw))
	return true
}

func indent(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n     ") }

// getJSON runs kubectl get ... -o json into v.
func (k *Checker) getJSON(ctx context.Context, v any, args ...string) error {
	out, err := k.Kubectl(ctx, append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// applyYAML applies a manifest given inline, through a file in dir.
func applyYAML(ctx context.Context, kubectl func(context.Context, ...string) (string, error), dir, yaml string, args ...string) (string, error) {
	f, err := os.CreateTemp(dir, "manifest-*.yaml")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(yaml)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return kubectl(ctx, append([]string{"apply", "-f", f.Name()}, args...)...)
}

func (k *Checker) applyYAML(ctx context.Context, yaml string, args ...string) (string, error) {
	return applyYAML(ctx, k.Kubectl, k.Work, yaml, args...)
}

// restrictedNamespace creates ns labelled to enforce Pod Security "restricted", as
// deploy/k8s/base/namespace.yaml does.
func (k *Checker) restrictedNamespace(ctx context.Context, ns string) error {
	_, err := k.applyYAML(ctx, `apiVersion: v1
kind: Namespace
metadata:
  name: `+ns+`
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: v1.37
    pod-security.kubernetes.io/warn: restricted
    pod-security.kubernetes.io/audit: restricted
`)
	return err
}

// deleteNamespace deletes ns and waits until it is gone (its pods stopped, its volumes
// released).
func (k *Checker) deleteNamespace(ctx context.Context, ns string) error {
	_, err := k.Kubectl(ctx, "delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=180s")
	return err
}

// CheckPlatform is check 1: every node component and add-on healthy, and Pod Security
// "restricted" enforced for real in ns (which it creates).
func (k *Checker) CheckPlatform(ctx context.Context, ns string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		if k.Healthy != nil {
			s, err := k.Healthy(ctx)
			saw = append(saw, s)
			if err != nil {
				return err
			}
		}
		var nodes corev1.NodeList
		if err := k.getJSON(ctx, &nodes, "get", "nodes"); err != nil {
			return err
		}
		for _, n := range nodes.Items {
			ready := false
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			saw = append(saw, fmt.Sprintf("node %s Ready=%v (kubelet %s, %s)", n.Name, ready, n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.ContainerRuntimeVersion))
			if !ready {
				return fmt.Errorf("node %s not Ready", n.Name)
			}
		}
		if _, err := k.Kubectl(ctx, "get", "--raw", "/readyz"); err != nil {
			return fmt.Errorf("API server /readyz: %w", err)
		}
		saw = append(saw, "API server /readyz ok")
		var pods corev1.PodList
		if err := k.getJSON(ctx, &pods, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"); err != nil {
			return err
		}
		if n := readyPods(pods.Items); n == 0 {
			return fmt.Errorf("no Ready DNS pod (k8s-app=kube-dns) in kube-system")
		} else {
			saw = append(saw, fmt.Sprintf("cluster DNS: %d pod(s) Ready behind kube-dns", n))
		}
		if err := poll(ctx, "metrics.k8s.io serves node metrics", 2*time.Minute, 2*time.Second, func() error {
			out, err := k.Kubectl(ctx, "top", "node", "--no-headers")
			if err == nil {
				saw = append(saw, "metrics-server: kubectl top node: "+strings.Join(strings.Fields(out), " "))
			}
			return err
		}); err != nil {
			return err
		}
		out, err := k.Kubectl(ctx, "get", "storageclass", "-o", `jsonpath={range .items[*]}{.metadata.name} {.provisioner} {.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}{"\n"}{end}`)
		if err != nil || !strings.Contains(out, "true") {
			return fmt.Errorf("no default StorageClass: %q %v", out, err)
		}
		saw = append(saw, "StorageClass: "+strings.TrimSpace(out))
		// Traefik accepts its GatewayClass a moment after it answers /ping.
		if err := poll(ctx, "GatewayClass accepted", time.Minute, time.Second, func() error {
			out, err := k.Kubectl(ctx, "get", "gatewayclass", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.controllerName} Accepted={.status.conditions[?(@.type=="Accepted")].status}{"\n"}{end}`)
			if err != nil || !strings.Contains(out, "Accepted=True") {
				return fmt.Errorf("no accepted GatewayClass: %q %v", out, err)
			}
			saw = append(saw, "GatewayClass: "+strings.TrimSpace(out))
			return nil
		}); err != nil {
			return err
		}

		// Pod Security: a privileged pod is refused in the app's namespace.
		if err := k.restrictedNamespace(ctx, ns); err != nil {
			return err
		}
		out, err = k.applyYAML(ctx, `apiVersion: v1
kind: Pod
metadata: {name: privileged, namespace: `+ns+`}
spec:
  containers:
    - name: p
      image: `+k.ProbeImage+`
      imagePullPolicy: Never
      command: ["sleep", "60"]
      securityContext: {privileged: true}
`)
		if err == nil {
			_, _ = k.Kubectl(ctx, "-n", ns, "delete", "pod", "privileged", "--wait=false")
			return fmt.Errorf("a privileged pod was admitted in %s: %s", ns, out)
		}
		if !strings.Contains(err.Error(), `violates PodSecurity "restricted`) {
			return fmt.Errorf("the privileged pod failed for another reason: %w", err)
		}
		msg := err.Error()
		if i := strings.Index(msg, "violates PodSecurity"); i >= 0 {
			msg = msg[i:]
			if j := strings.Index(msg, ":"); j > 0 && j+60 < len(msg) {
				msg = msg[:j+60] + "..."
			}
		}
		saw = append(saw, "privileged pod in "+ns+" refused: "+msg)
		return nil
	}()
	return k.result("1. node components and add-ons healthy; Pod Security enforced", t, strings.Join(saw, "\n"), err)
}

func readyPods(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// app is what the checks know of one deployment of the voting app in a namespace: each
// role's pods and Service.
type app struct {
	ns       string
	pods     map[string][]corev1.Pod // role -> Running pods
	services map[string]corev1.Service
	hosts    map[string]string // vote/result -> the hostname their route matches
}

// roleOf: the app's pods carry app.kubernetes.io/component (vote, worker, result), the
// datastores app.kubernetes.io/name (redis, postgresql).
func roleOf(labels map[string]string) string {
	switch labels["app.kubernetes.io/name"] {
	case "redis":
		return "redis"
	case "postgresql":
		return "postgres"
	}
	switch c := labels["app.kubernetes.io/component"]; c {
	case "vote", "worker", "result":
		return c
	}
	return ""
}

func (k *Checker) discover(ctx context.Context, ns string) (*app, error) {
	a := &app{ns: ns, pods: map[string][]corev1.Pod{}, services: map[string]corev1.Service{}, hosts: map[string]string{}}
	var pods corev1.PodList
	if err := k.getJSON(ctx, &pods, "-n", ns, "get", "pods"); err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		if r := roleOf(p.Labels); r != "" && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			a.pods[r] = append(a.pods[r], p)
		}
	}
	var svcs corev1.ServiceList
	if err := k.getJSON(ctx, &svcs, "-n", ns, "get", "services"); err != nil {
		return nil, err
	}
	for _, s := range svcs.Items {
		if r := roleOf(s.Spec.Selector); r != "" {
			a.services[r] = s
		}
	}
	var routes struct {
		Items []struct {
			Spec struct {
				Hostnames []string `json:"hostnames"`
				Rules     []struct {
					BackendRefs []struct {
						Name string `json:"name"`
					} `json:"backendRefs"`
				} `json:"rules"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := k.getJSON(ctx, &routes, "-n", ns, "get", "httproutes"); err != nil {
		return nil, err
	}
	for _, r := range routes.Items {
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				for role, s := range a.services {
					if s.Name == b.Name && len(r.Spec.Hostnames) > 0 {
						a.hosts[role] = r.Spec.Hostnames[0]
					}
				}
			}
		}
	}
	for _, r := range []string{"vote", "worker", "result", "redis", "postgres"} {
		if len(a.pods[r]) == 0 {
			return a, fmt.Errorf("no running %s pod in %s", r, ns)
		}
	}
	for _, r := range []string{"vote", "result"} {
		if a.hosts[r] == "" {
			return a, fmt.Errorf("no HTTPRoute with a hostname sends to the %s Service in %s", r, ns)
		}
	}
	return a, nil
}

// routesServe is check 2's last wait: the Gateway serves the app. Traefik programs a route
// some seconds after it is accepted and answers 404 until then, so the check asks for each
// page through the Gateway until both answer 200.
func (k *Checker) routesServe(ctx context.Context, ns string) (string, error) {
	var saw string
	err := poll(ctx, "the Gateway serves vote and result", 2*time.Minute, time.Second, func() error {
		a, err := k.discover(ctx, ns)
		if err != nil {
			return err
		}
		var got []string
		for _, role := range []string{"vote", "result"} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.hosts[role]+"/", nil)
			if err != nil {
				return err
			}
			resp, err := k.gatewayClient().Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET http://%s/ through %s: %s", a.hosts[role], k.Gateway, resp.Status)
			}
			got = append(got, fmt.Sprintf("GET http://%s/ %s", a.hosts[role], resp.Status))
		}
		saw = "through the Gateway " + k.Gateway + ": " + strings.Join(got, ", ")
		return nil
	})
	return saw, err
}

// memorySettings is part of check 2: each app container keeps its heap under 80% of its
// memory limit (the binary reads the limit from its cgroup and logs GOMEMLIMIT), and Redis
// refuses votes at its maxmemory rather than drop any.
func (k *Checker) memorySettings(ctx context.Context, ns string) (string, error) {
	a, err := k.discover(ctx, ns)
	if err != nil {
		return "", err
	}
	var saw []string
	for _, role := range []string{"vote", "worker", "result"} {
		p := a.pods[role][0]
		c := p.Spec.Containers[0]
		limit := c.Resources.Limits.Memory().Value()
		logs, err := k.Kubectl(ctx, "-n", ns, "logs", p.Name, "-c", c.Name)
		if err != nil {
			return "", err
		}
		var got int64
		for line := range strings.Lines(logs) {
			var l struct {
				Msg        string `json:"msg"`
				GOMEMLIMIT int64
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "memory limit from the container's" {
				got = l.GOMEMLIMIT
			}
		}
		if want := int64(float64(limit) * 0.8); got != want { // cmd/voting/memlimit.go: memoryShare
			return "", fmt.Errorf("%s: GOMEMLIMIT %d in its log, want 80%% of the %d-byte limit (%d)", p.Name, got, limit, want)
		}
		saw = append(saw, fmt.Sprintf("%s %d MiB", role, got>>20))
	}
	out, err := k.Kubectl(ctx, "-n", ns, "exec", a.pods["redis"][0].Name, "--", "redis-cli", "config", "get", "maxmemory*")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	conf := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		conf[f[i]] = f[i+1]
	}
	if conf["maxmemory-policy"] != "noeviction" || conf["maxmemory"] == "0" || conf["maxmemory"] == "" {
		return "", fmt.Errorf("redis: %v, want a maxmemory with policy noeviction", conf)
	}
	return fmt.Sprintf("GOMEMLIMIT 80%% of each limit: %s; Redis maxmemory %s, %s",
		strings.Join(saw, ", "), conf["maxmemory"], conf["maxmemory-policy"]), nil
}

// CheckReady is check 2's wait: every pod of ns Ready (helper pods that ran to completion
// aside), every PVC Bound.
func (k *Checker) waitReady(ctx context.Context, ns string) (string, error) {
	var saw string
	err := poll(ctx, "every pod Ready and every PVC Bound in "+ns, 6*time.Minute, 3*time.Second, func() error {
		var pods corev1.PodList
		if err := k.getJSON(ctx, &pods, "-n", ns, "get", "pods"); err != nil {
			return err
		}
		var notReady []string
		ready := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodSucceeded {
				continue
			}
			if readyPods([]corev1.Pod{p}) == 1 && p.DeletionTimestamp == nil {
				ready++
				continue
			}
			notReady = append(notReady, p.Name+" "+string(p.Status.Phase)+waitingReason(p))
		}
		var pvcs corev1.PersistentVolumeClaimList
		if err := k.getJSON(ctx, &pvcs, "-n", ns, "get", "pvc"); err != nil {
			return err
		}
		var unbound, bound []string
		for _, c := range pvcs.Items {
			if c.Status.Phase != corev1.ClaimBound {
				unbound = append(unbound, c.Name+" "+string(c.Status.Phase))
			} else {
				bound = append(bound, c.Name+" → "+c.Spec.VolumeName)
			}
		}
		sort.Strings(bound)
		saw = fmt.Sprintf("%d pods Ready; %d PVCs Bound: %s", ready, len(bound), strings.Join(bound, ", "))
		if len(notReady) > 0 || len(unbound) > 0 || ready == 0 {
			return fmt.Errorf("not Ready: %v; not Bound: %v", notReady, unbound)
		}
		return nil
	})
	return saw, err
}

func waitingReason(p corev1.Pod) string {
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.State.Waiting != nil {
			return " (" + s.Name + ": " + s.State.Waiting.Reason + ")"
		}
		if s.State.Terminated != nil && s.State.Terminated.ExitCode != 0 {
			return fmt.Sprintf(" (%s exited %d)", s.Name, s.State.Terminated.ExitCode)
		}
	}
	return ""
}

// Diagnose prints the state of ns: pods, events and the last log lines of pods not Ready.
func (k *Checker) Diagnose(ctx context.Context, ns string) {
	out, _ := k.Kubectl(ctx, "get", "pods,pvc,svc,httproute,hpa", "-n", ns, "-o", "wide")
	fmt.Fprintf(k.Out, "---- state of %s\n%s\n", ns, out)
	out, _ = k.Kubectl(ctx, "get", "events", "-n", ns, "--sort-by=.lastTimestamp")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	fmt.Fprintf(k.Out, "---- events of %s (last 30)\n%s\n", ns, strings.Join(lines, "\n"))
	var pods corev1.PodList
	if k.getJSON(ctx, &pods, "-n", ns, "get", "pods") == nil {
		for _, p := range pods.Items {
			if readyPods([]corev1.Pod{p}) == 1 || p.Status.Phase == corev1.PodSucceeded {
				continue
			}
			out, _ := k.Kubectl(ctx, "-n", ns, "logs", p.Name, "--all-containers", "--tail=20", "--prefix")
			fmt.Fprintf(k.Out, "---- logs of %s\n%s\n", p.Name, out)
		}
	}
}

// writeFile writes content into the check's work directory and returns the path.
func (k *Checker) writeFile(name, content string) (string, error) {
	p := filepath.Join(k.Work, name)
	return p, os.WriteFile(p, []byte(content), 0o644)
}
