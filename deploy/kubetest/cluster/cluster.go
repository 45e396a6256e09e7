// Package cluster runs a real single-node Kubernetes on this machine, built from Go modules
// (tools/kube, tools/traefik) and Debian's containerd, runc and CNI plugins, and checks the
// voting app on it: `cmd/cluster up|check|down|run`. Every component is a real one: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy; CoreDNS as
// the cluster DNS, kube-router's firewall as the NetworkPolicy engine, metrics-server for the
// HPAs, local-path-provisioner for volumes and Traefik as the Gateway API implementation.
//
// The layout is fixed (one bridge, one node), so that its addresses can be written down:
//
//	node IP, bridge voting0     10.244.0.1/24  (pods get 10.244.0.2 and up)
//	Service range               10.96.0.0/16   (DNS 10.96.0.10)
//	kube-apiserver              https://10.244.0.1:6443 (on the bridge: pods reach it too)
//	Traefik (Gateway, Ingress)  http://127.0.0.1:<GatewayPort>
//
// Nothing listens on the machine's own interfaces; every process and change to the host
// (bridge, iptables rules, ipsets, mounts, sysctl) is recorded in the work directory and undone
// by Down, which a second run also calls first to clear a crashed one.
package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/votingapp/voting/deploy/kubetest/supplychain"
)

// The cluster's fixed addresses and names.
const (
	NodeName    = "voting-node"
	Bridge      = "voting0"
	NodeIP      = "10.244.0.1"
	PodCIDR     = "10.244.0.0/24"
	ServiceCIDR = "10.96.0.0/16"
	DNSIP       = "10.96.0.10"
	APIPort     = 6443
	// GatewayPort is where Traefik's web entry point listens on 127.0.0.1; the Gateway's
	// listener must use the same port.
	GatewayPort = 8000

	containerdState = "/run/voting-containerd"
	cniNetwork      = "voting"
	// ruleComment marks every iptables rule the cluster itself adds on the host.
	ruleComment = "voting-cluster"
)

// Cluster is one node's worth of processes and the files they use.
type Cluster struct {
	// Work holds PID files, logs, certificates, kubeconfig and the node's data.
	Work string
	// Bin holds etcd, kube-apiserver, kubectl, kubelet, kube-controller-manager,
	// kube-scheduler, kube-proxy, coredns, kube-router, metrics-server and
	// local-path-provisioner (scripts/kube-tools).
	Bin string
	// Traefik is the traefik binary (scripts/traefik-tool).
	Traefik string
	// Images are image tarballs (docker save) imported into containerd at start-up.
	Images []string
	// Registry is the distribution registry binary (scripts/tool registry): it serves on
	// loopback, and the node's containerd pulls ghcr.io's images from it (a mirror), so the
	// app's image is pulled as on any cluster rather than imported.
	Registry string
	// AppImage is the app image's tarball (docker save), pushed to the registry as
	// ghcr.io/votingapp/voting:dev.
	AppImage string
	// Root is the repository's top directory: its chart is pushed to the registry, its image
	// policy checked (check 8).
	Root string
	// PolicyWebhook is sigstore policy-controller's webhook (scripts/tool policy-webhook),
	// PolicyConfig its config/ directory (in the Go module cache), Cosign the cosign binary:
	// check 8, the image policy enforced.
	PolicyWebhook, PolicyConfig, Cosign string
	// Chart is the Helm chart as pushed to the registry at start-up: the checks install it
	// from oci://.
	Chart *supplychain.Chart
	// Out receives one line per step.
	Out io.Writer

	started time.Time
}

// Kubeconfig is the admin kubeconfig's path.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.Work, "kubeconfig") }

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.Out, "cluster: [%5.1fs] %s\n", time.Since(c.started).Seconds(), fmt.Sprintf(format, args...))
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.Bin, name) }

// Up starts everything and returns when the node is Ready and every add-on answers.
func (c *Cluster) Up(ctx context.Context) error {
	c.started = time.Now()
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl", "kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns", "kube-router", "metrics-server", "local-path-provisioner"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			return fmt.Errorf("missing %s in %s (scripts/kube-tools builds it): %w", b, c.Bin, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(c.Work, "certs"), 0o755); err != nil {
		return err
	}
	return c.steps(ctx, []step{
		{"host snapshot", c.snapshotHost},
		{"images", c.makeImages},
		{"network", c.upNetwork},
		{"outside server", c.upOutside},
		{"registry", c.upRegistry},
		{"control plane", c.upControlPlane},
		{"containerd", c.upContainerd},
		{"node", c.upNode},
		{"add-ons", c.upAddons},
	})
}

// A step is one part of the bring-up.
type step struct {
	name string
	f    func(context.Context) error
}

// steps runs each step in order, logs how long it took, and stops at the first failure.
func (c *Cluster) steps(ctx context.Context, steps []step) error {
	for _, s := range steps {
		t := time.Now()
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		c.logf("%s ready in %.1fs", s.name, time.Since(t).Seconds())
	}
	return nil
}

// Checker returns a Checker for this cluster.
func (c *Cluster) Checker(root, voting string) *Checker {
	return &Checker{
		Kubectl:    c.Kubectl,
		Kubeconfig: c.Kubeconfig(),
		Root:       root,
		Voting:     voting,
		Gateway:    fmt.Sprintf("127.0.0.1:%d", GatewayPort),
		Outside:    OutsideIP + ":" + OutsidePort,
		ProbeImage: ProbeImage,
		Work:       c.Work,
		Healthy:    c.healthy,
		Chart:      c.Chart,
		Out:        c.Out,
	}
}

// hostComponents are the processes Up starts on the host, in start order.
var hostComponents = []string{"etcd", "kube-apiserver", "containerd", "kube-controller-manager", "kube-scheduler",
	"kubelet", "kube-proxy", "kube-router", "metrics-server", "local-path-provisioner", "traefik", "outside-server", "registry"}

// healthy reports every host process running and the ones with a health endpoint healthy.
func (c *Cluster) healthy(ctx context.Context) (string, error) {
	var down []string
	for _, n := range hostComponents {
		if !c.running(n) {
			down = append(down, n)
		}
	}
	saw := fmt.Sprintf("host processes running: %s", strings.Join(hostComponents, ", "))
	if len(down) > 0 {
		return saw, fmt.Errorf("not running: %s", strings.Join(down, ", "))
	}
	for _, h := range []struct{ name, path string }{
		{"kube-apiserver", "/livez"}, {"etcd (through the API server)", "/readyz/etcd"},
	} {
		if _, err := c.Kubectl(ctx, "get", "--raw", h.path); err != nil {
			return saw, fmt.Errorf("%s: %w", h.name, err)
		}
	}
	if _, err := run(ctx, "iptables", "-S", "KUBE-ROUTER-FORWARD"); err != nil {
		return saw, fmt.Errorf("kube-router's firewall chain is missing: %w", err)
	}
	status, err := pingTraefik()
	if err != nil {
		return saw, err
	}
	return saw + "; API server /livez and etcd ok; kube-router firewall chains in place; Traefik /ping " + status, nil
}

// Dump prints the tail of every component's log, for a failed start.
func (c *Cluster) Dump(w io.Writer) {
	for _, n := range hostComponents {
		b, err := os.ReadFile(c.path(n + ".log"))
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "---- %s.log (last 15 lines)\n%s\n", n, lastLines(strings.TrimSpace(string(b)), 15))
	}
}

// ForgetSnapshot removes the host snapshot once the tear-down was checked against it.
func (c *Cluster) ForgetSnapshot() { _ = os.Remove(c.snapshotPath()) }

// makeImages writes the cluster's own images (pause, CoreDNS, busybox as root and as a
// non-root probe) into the work directory and adds them to the images to import.
func (c *Cluster) makeImages(context.Context) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox (Debian's busybox-static) is needed for the probe and helper images: %w", err)
	}
	var links []Link
	for _, l := range []string{"sh", "nc", "nslookup", "wget", "sleep", "timeout", "sed", "grep", "mkdir", "rm", "ls", "cat", "echo", "id", "env"} {
		links = append(links, Link{"/bin/" + l, "busybox"})
	}
	bb := []ImageFile{{Path: "/bin/busybox", Source: busybox}}
	for _, img := range []struct {
		file, ref  string
		files      []ImageFile
		links      []Link
		user       string
		entrypoint []string
	}{
		{"pause.tar", PauseImage, []ImageFile{{Path: "/pause", Source: c.bin("pause")}}, nil, "65535:65535", []string{"/pause"}},
		{"coredns.tar", CoreDNSImage, []ImageFile{{Path: "/coredns", Source: c.bin("coredns")}}, nil, "0:0", []string{"/coredns"}},
		{"busybox.tar", BusyboxImage, bb, links, "0:0", nil},
		{"probe.tar", ProbeImage, bb, links, "65532:65532", nil},
	} {
		out := c.path(img.file)
		if err := WriteImage(out, img.ref, img.files, img.links, img.user, img.entrypoint); err != nil {
			return fmt.Errorf("%s: %w", img.ref, err)
		}
		c.Images = append(c.Images, out)
	}
	return nil
}
