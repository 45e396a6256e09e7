package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The images the cluster's own pods use, made by the e2e script (scripts/e2e-cluster) from
// this machine's binaries and imported with the app's.
const (
	PauseImage   = "localhost/pause:ci"
	CoreDNSImage = "localhost/coredns:ci"
	// BusyboxImage is Debian's busybox-static, run as root: local-path-provisioner's helper
	// pods create and remove volume directories with it.
	BusyboxImage = "localhost/busybox:ci"
	// ProbeImage is the same busybox as user 65532, so that it passes Pod Security
	// "restricted": the policy checks run nc and nslookup from it.
	ProbeImage = "localhost/probe:ci"
	// GatewayClass is the class Traefik serves.
	GatewayClass = "traefik"
)

// GatewayCRDs is the directory of the Gateway API standard CRDs to install
// (sigs.k8s.io/gateway-api's config/crd/standard).
var GatewayCRDs string

// upAddons starts the policy engine, the cluster DNS, metrics-server, the volume provisioner
// and the gateway, and waits until each answers.
func (c *Cluster) upAddons(ctx context.Context) error {
	return c.steps(ctx, []step{
		{"kube-router (NetworkPolicy)", c.upKubeRouter},
		{"CoreDNS", c.upCoreDNS},
		{"metrics-server", c.upMetricsServer},
		{"local-path-provisioner", c.upLocalPath},
		{"Traefik (Gateway API)", c.upTraefik},
	})
}

func (c *Cluster) apply(ctx context.Context, yaml string) error {
	_, err := applyYAML(ctx, c.Kubectl, c.Work, yaml)
	return err
}

// upKubeRouter runs kube-router with only its network-policy firewall: pod routing stays with
// the bridge and Services with kube-proxy. It reads the node's InternalIP by its name.
func (c *Cluster) upKubeRouter(ctx context.Context) error {
	if err := c.start("kube-router", c.bin("kube-router"), "--kubeconfig", c.Kubeconfig(),
		"--hostname-override", NodeName, "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--service-cluster-ip-range", ServiceCIDR, "--health-port=0", "--metrics-port=0", "--v=1"); err != nil {
		return err
	}
	// Its top chain appears once the first sync has run.
	return poll(ctx, "kube-router's KUBE-ROUTER-FORWARD chain", time.Minute, 300*time.Millisecond, func() error {
		if _, err := run(ctx, "iptables", "-S", "KUBE-ROUTER-FORWARD"); err != nil {
			return err
		}
		if !c.running("kube-router") {
			return fmt.Errorf("kube-router exited; see %s", c.path("kube-router.log"))
		}
		return nil
	})
}

// upCoreDNS runs CoreDNS as a pod in kube-system labelled k8s-app=kube-dns, behind the
// kube-dns Service at DNSIP, as kubeadm and kind do: the app's allow-dns policy selects
// exactly those pods, so DNS from a pod under the app's policies is proved, not assumed.
func (c *Cluster) upCoreDNS(ctx context.Context) error {
	manifest := `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
        - name: coredns
          image: ` + CoreDNSImage + `
          imagePullPolicy: Never
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
          livenessProbe: {httpGet: {path: /health, port: 8080}}
          volumeMounts: [{name: config, mountPath: /etc/coredns}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: ` + DNSIP + `
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
`
	if err := c.apply(ctx, manifest); err != nil {
		return err
	}
	_, err := c.Kubectl(ctx, "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s")
	return err
}

// upMetricsServer runs metrics-server on the host (it scrapes the kubelet at the node IP)
// behind an APIService, so that the API server's aggregation layer serves metrics.k8s.io to
// the HPA controller and kubectl top.
func (c *Cluster) upMetricsServer(ctx context.Context) error {
	const port = "4443"
	if err := c.start("metrics-server", c.bin("metrics-server"),
		"--kubeconfig", c.Kubeconfig(), "--authentication-kubeconfig", c.Kubeconfig(), "--authorization-kubeconfig", c.Kubeconfig(),
		"--bind-address", NodeIP, "--secure-port", port, "--cert-dir", c.path("metrics-server"),
		"--kubelet-insecure-tls", "--kubelet-preferred-address-types", "InternalIP",
		"--metric-resolution", "15s", "--kubelet-request-timeout", "5s"); err != nil {
		return err
	}
	manifest := `apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: ` + port + `, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
endpoints: [{addresses: ["` + NodeIP + `"], conditions: {ready: true}}]
ports: [{name: https, port: ` + port + `, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
`
	if err := c.apply(ctx, manifest); err != nil {
		return err
	}
	// Node metrics appear after the first scrape or two (--metric-resolution).
	return poll(ctx, "kubectl top node", 2*time.Minute, 2*time.Second, func() error {
		_, err := c.Kubectl(ctx, "top", "node", NodeName)
		return err
	})
}

// upLocalPath runs rancher's local-path-provisioner (kind's default provisioner) on the host:
// each claim of the default StorageClass "standard" gets a directory under the work directory,
// made by a helper pod.
func (c *Cluster) upLocalPath(ctx context.Context) error {
	volumes := c.path("volumes")
	if err := os.MkdirAll(volumes, 0o755); err != nil {
		return err
	}
	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner, namespace: local-path-storage}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  config.json: |-
    {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["` + volumes + `"]}]}
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "$VOL_DIR"
  helperPod.yaml: |-
    apiVersion: v1
    kind: Pod
    metadata:
      name: helper-pod
    spec:
      containers:
      - name: helper-pod
        image: ` + BusyboxImage + `
        imagePullPolicy: Never
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
`
	if err := c.apply(ctx, manifest); err != nil {
		return err
	}
	if err := c.start("local-path-provisioner", c.bin("local-path-provisioner"), "start",
		"--kubeconfig", c.Kubeconfig(), "--namespace", "local-path-storage",
		"--service-account-name", "local-path-provisioner", "--helper-image", BusyboxImage); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if !c.running("local-path-provisioner") {
		return fmt.Errorf("exited; see %s", c.path("local-path-provisioner.log"))
	}
	return nil
}

// upTraefik installs the Gateway API CRDs, starts Traefik with its Gateway API and Ingress
// providers on 127.0.0.1:GatewayPort, and creates its GatewayClass.
func (c *Cluster) upTraefik(ctx context.Context) error {
	if GatewayCRDs == "" {
		return fmt.Errorf("no Gateway API CRD directory given")
	}
	// Server-side: the HTTPRoute CRD is larger than client-side apply's annotation limit.
	if _, err := c.Kubectl(ctx, "apply", "--server-side", "-f", GatewayCRDs); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"); err != nil {
		return err
	}
	token, err := os.ReadFile(c.path("token"))
	if err != nil {
		return err
	}
	ca := filepath.Join(c.path("certs"), "apiserver.crt")
	endpoint := fmt.Sprintf("https://%s:%d", NodeIP, APIPort)
	// The --global flags stop its version check and usage report (no internet here).
	if err := c.start("traefik", c.Traefik,
		"--global.checknewversion=false", "--global.sendanonymoususage=false",
		fmt.Sprintf("--entrypoints.web.address=127.0.0.1:%d", GatewayPort),
		"--ping=true", "--ping.entrypoint=web",
		"--providers.kubernetesgateway=true",
		"--providers.kubernetesgateway.endpoint="+endpoint,
		"--providers.kubernetesgateway.token="+strings.TrimSpace(string(token)),
		"--providers.kubernetesgateway.certauthfilepath="+ca,
		"--providers.kubernetesingress=true",
		"--providers.kubernetesingress.endpoint="+endpoint,
		"--providers.kubernetesingress.token="+strings.TrimSpace(string(token)),
		"--providers.kubernetesingress.certauthfilepath="+ca,
		"--log.level=INFO"); err != nil {
		return err
	}
	manifest := `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ` + GatewayClass + `}
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec:
  controller: traefik.io/ingress-controller
`
	if err := c.apply(ctx, manifest); err != nil {
		return err
	}
	return poll(ctx, "Traefik /ping", time.Minute, 300*time.Millisecond, func() error {
		_, err := pingTraefik()
		return err
	})
}

// pingTraefik asks Traefik's /ping on its web entry point.
func pingTraefik() (string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", GatewayPort))
	if err != nil {
		return "", fmt.Errorf("traefik /ping: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.Status, fmt.Errorf("traefik /ping: %s", resp.Status)
	}
	return resp.Status, nil
}
