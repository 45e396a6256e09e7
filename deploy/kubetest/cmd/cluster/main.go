// Command cluster runs the voting app on a real single-node Kubernetes on this machine and
// checks it (make e2e-cluster runs it through scripts/e2e-cluster):
//
//	cluster run     down (a stale run), up, every check, down, and the leftovers check
//	cluster up      start the node and its add-ons and leave them running (KUBECONFIG printed)
//	cluster check   the checks, against the cluster `up` started
//	cluster down    stop everything `up` started and undo its changes to the host
//
// The binaries come from scripts/kube-tools and scripts/traefik-tool, the images from
// scripts/e2e-cluster. It must run as root (it starts containerd, a kubelet and iptables
// changes). Package cluster has the details.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/votingapp/voting/deploy/kubetest/cluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cluster run|up|check|down [flags]")
		os.Exit(2)
	}
	verb := os.Args[1]
	fs := flag.NewFlagSet("cluster "+verb, flag.ExitOnError)
	work := fs.String("work", "/tmp/voting-cluster", "work directory: PID files, logs, certificates, the node's data")
	bin := fs.String("bin", "", "directory with the Kubernetes binaries and add-ons (scripts/kube-tools)")
	traefik := fs.String("traefik", "", "the traefik binary (scripts/traefik-tool)")
	images := fs.String("images", "", "comma-separated image tarballs (docker save) to import: Redis', PostgreSQL's")
	registry := fs.String("registry", "", "the distribution registry binary (scripts/tool registry): the node pulls the app image from it")
	appImage := fs.String("app-image", "", "the app image's tarball (docker save), pushed to the registry")
	policyWebhook := fs.String("policy-webhook", "", "sigstore policy-controller's webhook (scripts/tool policy-webhook), for check 8")
	policyConfig := fs.String("policy-config", "", "policy-controller's config/ directory (its Go module's), for check 8")
	cosign := fs.String("cosign", "", "the cosign binary (scripts/tool cosign), for check 8")
	crds := fs.String("gateway-crds", "", "directory of the Gateway API standard CRDs (sigs.k8s.io/gateway-api config/crd/standard)")
	root := fs.String("root", "../..", "the repository's top directory")
	voting := fs.String("voting", "", "the voting binary, for its load generator")
	only := fs.String("only", "", "comma-separated deployments to check: helm, kustomize (default both)")
	// check against a cluster that this command did not start (kind in GitHub Actions):
	kubeconfig := fs.String("kubeconfig", "", "check: the cluster's kubeconfig; without it, the cluster `up` started")
	kubectl := fs.String("kubectl", "kubectl", "check -kubeconfig: the kubectl binary")
	gateway := fs.String("gateway", "", "check -kubeconfig: host:port where the Gateway's listener answers from here")
	outside := fs.String("outside", "", "check -kubeconfig: ip:port of an HTTP server outside the cluster, on this machine, for the egress check")
	probe := fs.String("probe-image", "", "check -kubeconfig: a busybox image whose user is not root, present on the nodes")
	_ = fs.Parse(os.Args[2:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	abs := func(p string) string {
		if p == "" {
			return p
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	c := &cluster.Cluster{Work: abs(*work), Bin: abs(*bin), Traefik: abs(*traefik), Registry: abs(*registry),
		AppImage: abs(*appImage), Root: abs(*root), PolicyWebhook: abs(*policyWebhook), PolicyConfig: abs(*policyConfig),
		Cosign: abs(*cosign), Out: os.Stdout}
	for _, img := range strings.Split(*images, ",") {
		if img != "" {
			c.Images = append(c.Images, abs(img))
		}
	}
	cluster.GatewayCRDs = abs(*crds)
	checks := func() int {
		k := c.Checker(abs(*root), abs(*voting))
		if *kubeconfig != "" {
			k = &cluster.Checker{
				Kubectl: func(ctx context.Context, args ...string) (string, error) {
					return cluster.Run(ctx, *kubectl, append([]string{"--kubeconfig", abs(*kubeconfig)}, args...)...)
				},
				Kubeconfig: abs(*kubeconfig), Root: abs(*root), Voting: abs(*voting), Gateway: *gateway,
				Outside: *outside, ProbeImage: *probe, Work: c.Work, Out: os.Stdout,
			}
			if err := os.MkdirAll(c.Work, 0o755); err != nil {
				fail(err)
			}
		}
		return runChecks(ctx, k, *only)
	}

	var rc int
	switch verb {
	case "up":
		if err := c.Down(ctx); err != nil {
			fail(err)
		}
		if err := c.Up(ctx); err != nil {
			fail(err)
		}
		fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig())
	case "down":
		if err := c.Down(ctx); err != nil {
			fail(err)
		}
	case "check":
		rc = checks()
	case "run":
		rc = runAll(ctx, c, checks)
	default:
		fmt.Fprintf(os.Stderr, "cluster: unknown verb %q\n", verb)
		rc = 2
	}
	os.Exit(rc)
}

// runAll is `cluster run`: a clean start, the checks, and check 7, the tear-down.
func runAll(ctx context.Context, c *cluster.Cluster, checks func() int) int {
	start := time.Now()
	if err := c.Down(ctx); err != nil {
		fail(err)
	}
	rc := 0
	if err := c.Up(ctx); err != nil {
		fmt.Printf("FAIL cluster up: %v\n", err)
		c.Dump(os.Stdout)
		rc = 1
	} else {
		rc = checks()
		// Check 8 last: it starts an admission webhook that judges the pods of the namespaces
		// opted in to it, and removes it again.
		if !c.CheckImagePolicy(ctx, c.Checker(c.Root, "")) {
			rc = 1
		}
		if saw, err := c.PulledFromRegistry(); err != nil {
			fmt.Printf("FAIL image pull: %v\n", err)
			rc = 1
		} else {
			fmt.Printf("ok   image pull: %s\n", saw)
		}
	}
	// Not the signal's context: a tear-down after Ctrl-C must still run to the end.
	downCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t := time.Now()
	err := c.Down(downCtx)
	var left []string
	if err == nil {
		left, err = c.Leftovers()
	}
	switch {
	case err != nil:
		fmt.Printf("FAIL 7. tear-down: %v\n", err)
		rc = 1
	case len(left) > 0:
		fmt.Printf("FAIL 7. tear-down left behind:\n     %s\n", strings.Join(left, "\n     "))
		rc = 1
	default:
		fmt.Printf("ok   7. tear-down (%.0fs)\n     no process, mount, network interface or namespace, iptables chain or rule, ipset or nftables table left that was not there before; ip_forward restored\n", time.Since(t).Seconds())
		c.ForgetSnapshot()
	}
	fmt.Printf("cluster: run finished in %.0fs, exit %d\n", time.Since(start).Seconds(), rc)
	return rc
}

// runChecks runs checks 1 to 6 on the chart (prod values plus the node's), then on the
// kustomize overlay.
func runChecks(ctx context.Context, k *cluster.Checker, only string) int {
	want := func(d string) bool { return only == "" || strings.Contains(only, d) }
	const ns = "voting"
	k.CheckPlatform(ctx, ns)
	if want("helm") {
		if k.DeployHelm(ctx, ns, "voting", []string{
			filepath.Join(k.Root, "deploy", "helm", "values", "prod.yaml"),
			filepath.Join(k.Root, "deploy", "kubetest", "cluster", "testdata", "helm-node.yaml"),
		}) {
			k.CheckSeed(ctx, ns)
			k.CheckFaults(ctx, ns)
			k.CheckHPA(ctx, ns)
			k.CheckPolicies(ctx, ns) // last: it removes the policies
		}
		if err := k.UninstallHelm(ctx, ns, "voting"); err != nil {
			fmt.Printf("cluster: helm uninstall: %v\n", err)
		}
	}
	if want("kustomize") {
		if k.DeployKustomize(ctx, ns, filepath.Join(k.Root, "deploy", "kubetest", "cluster", "testdata", "kustomize")) {
			k.CheckSeed(ctx, ns)
			k.CheckPolicies(ctx, ns)
		}
		if err := k.DeleteKustomize(ctx, ns); err != nil {
			fmt.Printf("cluster: kustomize delete: %v\n", err)
		}
	}
	if f := k.Failed(); len(f) > 0 {
		fmt.Printf("cluster: %d checks passed, %d failed:\n  %s\n", k.Passed(), len(f), strings.Join(f, "\n  "))
		return 1
	}
	fmt.Printf("cluster: %d checks passed\n", k.Passed())
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}
