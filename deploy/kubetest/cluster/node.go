package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Work}, parts...)...)
}

// Kubectl runs the cluster's kubectl with the admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return run(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.Kubeconfig()}, args...)...)
}

// upControlPlane: etcd and kube-apiserver on the bridge address, with a static admin token,
// service-account keys and the front-proxy certificates the aggregation layer (metrics.k8s.io)
// needs.
func (c *Cluster) upControlPlane(ctx context.Context) error {
	certs := c.path("certs")
	if _, err := writeKey(filepath.Join(certs, "sa.key")); err != nil {
		return err
	}
	if err := frontProxyCerts(certs); err != nil {
		return err
	}
	token := randomToken()
	if err := os.WriteFile(filepath.Join(certs, "tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: voting, cluster: {server: "https://%s:%d", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %s}}]
contexts: [{name: voting, context: {cluster: voting, user: admin}}]
current-context: voting
`, NodeIP, APIPort, token)
	if err := os.WriteFile(c.Kubeconfig(), []byte(kubeconfig), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("token"), []byte(token), 0o600); err != nil {
		return err
	}

	client, err := freePort()
	if err != nil {
		return err
	}
	peer, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(client)
	if err := c.start("etcd", c.bin("etcd"), "--name", "voting", "--data-dir", c.path("etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peer),
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peer),
		"--initial-cluster", "voting=http://127.0.0.1:"+strconv.Itoa(peer),
		"--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := poll(ctx, "etcd answers", time.Minute, 200*time.Millisecond, func() error {
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(client))
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		return err
	}
	if err := c.start("kube-apiserver", c.bin("kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", NodeIP, "--advertise-address", NodeIP, "--secure-port", strconv.Itoa(APIPort),
		"--cert-dir", certs, "--token-auth-file", filepath.Join(certs, "tokens.csv"),
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(certs, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(certs, "sa.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged=true",
		"--requestheader-client-ca-file", filepath.Join(certs, "front-proxy-ca.crt"),
		"--proxy-client-cert-file", filepath.Join(certs, "front-proxy-client.crt"),
		"--proxy-client-key-file", filepath.Join(certs, "front-proxy-client.key"),
		"--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-username-headers", "X-Remote-User",
		"--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-"); err != nil {
		return err
	}
	return poll(ctx, "kube-apiserver /readyz", 2*time.Minute, 300*time.Millisecond, func() error {
		_, err := c.Kubectl(ctx, "get", "--raw", "/readyz")
		return err
	})
}

// upContainerd starts Debian's containerd with its CRI plugin on a socket of its own (never
// the one a Docker engine uses), runc as the runtime and the bridge CNI network, and imports
// the images; the app image is pulled from the loopback registry (upRegistry's hosts file),
// nothing from the internet.
func (c *Cluster) upContainerd(ctx context.Context) error {
	if err := os.MkdirAll(c.path("cni"), 0o755); err != nil {
		return err
	}
	// restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so containerd may not lower
	// a container's OOM score below its own.
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:ci"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, c.path("containerd"), containerdState, c.containerdSocket(), c.path("cni"), c.path("certs.d"))
	if err := os.WriteFile(c.path("containerd.toml"), []byte(conf), 0o644); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": %q, "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
`, cniNetwork, Bridge, PodCIDR, NodeIP)
	if err := os.WriteFile(c.path("cni", "10-voting.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	if err := c.start("containerd", "containerd", "--config", c.path("containerd.toml")); err != nil {
		return err
	}
	if err := poll(ctx, "containerd answers", time.Minute, 200*time.Millisecond, func() error {
		_, err := run(ctx, "ctr", "-a", c.containerdSocket(), "version")
		return err
	}); err != nil {
		return err
	}
	for _, img := range c.Images {
		t := time.Now()
		if _, err := c.ctr(ctx, "images", "import", "--no-unpack=false", img); err != nil {
			return err
		}
		c.logf("imported %s in %.1fs", filepath.Base(img), time.Since(t).Seconds())
	}
	return nil
}

func (c *Cluster) containerdSocket() string { return containerdState + "/containerd.sock" }

func (c *Cluster) ctr(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "ctr", append([]string{"-a", c.containerdSocket(), "-n", "k8s.io"}, args...)...)
}

// upNode starts the controller manager, the scheduler, the kubelet and kube-proxy, and waits
// for the node to be Ready.
func (c *Cluster) upNode(ctx context.Context) error {
	kc := c.Kubeconfig()
	certs := c.path("certs")
	kcmPort, _ := freePort()
	schedPort, _ := freePort()
	proxyMetrics, _ := freePort()
	proxyHealth, _ := freePort()
	// Node IPAM is off: the CNI plugin's host-local IPAM hands out the pod addresses. The HPA
	// sync period is 5 s (15 s by default) so the HPA check takes less time.
	if err := c.start("kube-controller-manager", c.bin("kube-controller-manager"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--service-account-private-key-file", filepath.Join(certs, "sa.key"),
		"--root-ca-file", filepath.Join(certs, "apiserver.crt"),
		"--use-service-account-credentials=true",
		"--controllers", "*,-node-ipam-controller",
		"--horizontal-pod-autoscaler-sync-period", "5s",
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kcmPort), "--leader-elect=false"); err != nil {
		return err
	}
	if err := c.start("kube-scheduler", c.bin("kube-scheduler"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(schedPort), "--leader-elect=false"); err != nil {
		return err
	}
	// This machine's cgroups are v1 (hybrid): failCgroupV1 false and the cgroupfs driver.
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: %s
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
clusterDNS: [%q]
clusterDomain: cluster.local
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
failSwapOn: false
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%%", "imagefs.available": "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
`, c.containerdSocket(), NodeIP, DNSIP)
	if err := os.WriteFile(c.path("kubelet.yaml"), []byte(kubelet), 0o644); err != nil {
		return err
	}
	if err := c.start("kubelet", c.bin("kubelet"), "--config", c.path("kubelet.yaml"), "--kubeconfig", kc,
		"--hostname-override", NodeName, "--node-ip", NodeIP, "--root-dir", c.path("kubelet")); err != nil {
		return err
	}
	if err := c.start("kube-proxy", c.bin("kube-proxy"), "--kubeconfig", kc, "--hostname-override", NodeName,
		"--cluster-cidr", PodCIDR, "--proxy-mode", "iptables", "--conntrack-max-per-core", "0",
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(proxyMetrics),
		"--healthz-bind-address", "127.0.0.1:"+strconv.Itoa(proxyHealth)); err != nil {
		return err
	}
	if err := poll(ctx, "node registered", 2*time.Minute, 500*time.Millisecond, func() error {
		_, err := c.Kubectl(ctx, "get", "node", NodeName)
		return err
	}); err != nil {
		return err
	}
	_, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", "node/"+NodeName, "--timeout=120s")
	return err
}

// Down stops everything Up started, in order, and removes what it changed on the host. It
// may be called on a half-started or crashed cluster, or when nothing runs.
func (c *Cluster) Down(ctx context.Context) error {
	if c.started.IsZero() {
		c.started = time.Now()
	}
	if _, err := os.Stat(c.Work); err != nil {
		return nil
	}
	c.logf("tearing down %s", c.Work)
	for _, n := range []string{policyWebhook, "traefik", "metrics-server", "local-path-provisioner", "kube-router", "kube-controller-manager", "kube-scheduler"} {
		c.stop(n)
	}
	// The kubelet tears the pods down (CNI DEL releases each address and veth) while it and
	// the API server still run.
	if c.running("kubelet") && c.running("kube-apiserver") {
		ctx2, cancel := context.WithTimeout(ctx, 90*time.Second)
		_, _ = c.Kubectl(ctx2, "delete", "pods", "--all", "--all-namespaces", "--grace-period=2", "--wait=true", "--timeout=80s")
		cancel()
	}
	for _, n := range []string{"kube-proxy", "kubelet", "kube-apiserver", "etcd"} {
		c.stop(n)
	}
	if c.running("containerd") {
		if out, err := c.ctr(ctx, "tasks", "ls", "-q"); err == nil {
			for _, t := range strings.Fields(out) {
				_, _ = c.ctr(ctx, "tasks", "kill", "-s", "KILL", t)
			}
			time.Sleep(time.Second)
			for _, t := range strings.Fields(out) {
				_, _ = c.ctr(ctx, "tasks", "rm", "-f", t)
			}
		}
		c.stop("containerd")
	}
	// runc shims that outlived containerd (a crashed run) hold their container's mounts.
	c.killShims()
	for _, m := range c.mounts() {
		_ = exec.Command("umount", "-l", m).Run()
	}
	c.downOutside()
	c.stop("registry")
	c.downNetwork(ctx)
	c.restoreSysctl()
	if os.Getenv("KEEP") == "1" {
		c.logf("kept %s (KEEP=1)", c.Work)
		return nil
	}
	if err := os.RemoveAll(c.Work); err != nil {
		return err
	}
	return os.RemoveAll(containerdState)
}

func (c *Cluster) running(name string) bool {
	b, err := os.ReadFile(c.path(name + ".pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && alive(pid)
}

// killShims kills containerd-shim-runc-v2 processes started for this cluster's containerd
// (their command line names its socket's directory).
func (c *Cluster) killShims() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, containerdState) {
			p, _ := os.FindProcess(pid)
			_ = p.Kill()
		}
	}
}

func (c *Cluster) restoreSysctl() {
	if before, err := c.snapshot(); err == nil && before.IPForward != "" {
		_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(before.IPForward), 0o644)
	}
}
