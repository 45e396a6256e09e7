package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/votingapp/voting/deploy/kubetest/render"
	"github.com/votingapp/voting/deploy/kubetest/supplychain"
)

// The namespace and process of sigstore policy-controller, as its own config/ names them.
const (
	policyNamespace = "cosign-system"
	policyWebhook   = "policy-webhook"
	policyPort      = "8443"
	// policyCheckNamespace is where check 8 starts its pods: opted in to the policy, and
	// Pod Security "restricted" like the app's.
	policyCheckNamespace = "voting-image-policy"
)

// CheckImagePolicy is check 8: sigstore policy-controller's admission webhook in the cluster,
// with the project's image policy (components/image-policy through the test variant with a
// key, the loopback registry in place of ghcr.io), refuses a pod whose image is not signed
// and admits one whose image is. The webhook is policy-controller's own (cmd/webhook, built
// by scripts/tool policy-webhook) with its own config/ (CRDs, webhook configurations,
// ConfigMaps), run as a host process behind its Service like metrics-server; the app image in
// the cluster's registry is signed for the check with a key made for it.
func (c *Cluster) CheckImagePolicy(ctx context.Context, k *Checker) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		if c.PolicyWebhook == "" || c.PolicyConfig == "" || c.Cosign == "" {
			return fmt.Errorf("the policy-controller webhook, its config/ directory and cosign are needed")
		}
		addr, err := os.ReadFile(c.path("registry.addr"))
		if err != nil {
			return err
		}
		repo := string(addr) + "/votingapp/voting"

		// The images: the app's, signed with the check's key (legacy format, as the release
		// workflow signs), and a copy with another label that nobody signed.
		img, err := supplychain.Pull(ctx, repo+":dev")
		if err != nil {
			return err
		}
		signed, err := supplychain.Push(ctx, img, repo+":dev")
		if err != nil {
			return err
		}
		cosign := supplychain.Cosign{Bin: c.Cosign, Home: c.path("cosign")}
		key, pub, err := cosign.KeyPair(ctx, c.path("cosign", "keys"))
		if err != nil {
			return err
		}
		if _, err := cosign.Run(ctx, "sign", "--key", key, "--new-bundle-format=false", "--use-signing-config=false",
			"--tlog-upload=false", signed.String()); err != nil {
			return err
		}
		other, err := supplychain.Relabel(img, "org.opencontainers.image.description", "never signed")
		if err != nil {
			return err
		}
		unsigned, err := supplychain.Push(ctx, other, repo+":unsigned")
		if err != nil {
			return err
		}

		// policy-controller: its config/ as released, the Service pointed at the host process.
		if _, err := c.Kubectl(ctx, "apply", "--server-side", "-k", c.PolicyConfig); err != nil {
			return fmt.Errorf("apply policy-controller's config/: %w", err)
		}
		if err := c.apply(ctx, `apiVersion: v1
kind: Service
metadata: {name: webhook, namespace: `+policyNamespace+`}
spec:
  selector: null
  ports: [{port: 443, targetPort: `+policyPort+`, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: webhook-host
  namespace: `+policyNamespace+`
  labels: {kubernetes.io/service-name: webhook}
addressType: IPv4
endpoints: [{addresses: ["`+NodeIP+`"], conditions: {ready: true}}]
ports: [{port: `+policyPort+`, protocol: TCP}]
`); err != nil {
			return err
		}
		// TUF off: a key authority needs none of Sigstore's public trust root, and it cannot
		// be fetched here.
		// The environment its own Deployment (config/webhook.yaml) gives it.
		home := c.path("policy-home")
		if err := os.MkdirAll(home, 0o700); err != nil {
			return err
		}
		if err := c.startEnv(policyWebhook, []string{"KUBECONFIG=" + c.Kubeconfig(), "SYSTEM_NAMESPACE=" + policyNamespace,
			"CONFIG_LOGGING_NAME=config-logging", "METRICS_DOMAIN=sigstore.dev/policy", "WEBHOOK_NAME=webhook",
			"KUBERNETES_MIN_VERSION=1.21.0", "HOME=" + home},
			c.PolicyWebhook, "--disable-tuf", "--secure-port", policyPort); err != nil {
			return err
		}
		// Ready when it has written its certificate into its webhook configuration.
		if err := poll(ctx, "policy-controller's webhook configured", 2*time.Minute, time.Second, func() error {
			out, err := c.Kubectl(ctx, "get", "validatingwebhookconfiguration", "policy.sigstore.dev", "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
			if err == nil && out == "" {
				err = fmt.Errorf("no caBundle yet")
			}
			return err
		}); err != nil {
			return err
		}

		// The project's policy with the check's key, for the loopback registry's repository.
		pubPEM, err := os.ReadFile(pub)
		if err != nil {
			return err
		}
		policy := c.path("image-policy.yaml")
		if err := supplychain.WriteKeyPolicy(c.Root, render.Kustomize, pubPEM, repo, policy); err != nil {
			return err
		}
		if err := poll(ctx, "the ClusterImagePolicies applied", time.Minute, 2*time.Second, func() error {
			_, err := c.Kubectl(ctx, "apply", "-f", policy)
			return err
		}); err != nil {
			return err
		}
		saw = append(saw, fmt.Sprintf("policy-controller %s (config/ applied, webhook on the host), components/image-policy with the check's key for %s", filepath.Base(filepath.Dir(c.PolicyConfig)), repo))
		if err := k.restrictedNamespace(ctx, policyCheckNamespace); err != nil {
			return err
		}
		if _, err := c.Kubectl(ctx, "label", "namespace", policyCheckNamespace, "policy.sigstore.dev/include=true", "--overwrite"); err != nil {
			return err
		}

		// An unsigned image is refused at admission; the signed one is admitted and runs.
		podYAML := func(name, image string) string {
			return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `, namespace: ` + policyCheckNamespace + `}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: voting
      image: ` + image + `
      args: [version]
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`
		}
		// The policy takes a moment to reach the webhook (it watches the policies): until then
		// the signed image may be refused for want of a policy, so the signed pod is retried.
		if err := poll(ctx, "the signed image admitted", time.Minute, 2*time.Second, func() error {
			_, err := k.applyYAML(ctx, podYAML("signed", signed.String()))
			return err
		}); err != nil {
			return err
		}
		if _, err := k.applyYAML(ctx, podYAML("unsigned", unsigned.String())); err == nil {
			return fmt.Errorf("the pod with the unsigned image %s was admitted", unsigned)
		} else {
			msg := err.Error()
			if !strings.Contains(msg, `admission webhook "policy.sigstore.dev" denied`) || !strings.Contains(msg, "failed policy: voting-images") {
				return fmt.Errorf("the unsigned pod was refused, but not by the image policy: %w", err)
			}
			saw = append(saw, "unsigned "+unsigned.DigestStr()[:19]+": refused: "+oneLine(msg[strings.Index(msg, "admission webhook"):]))
		}
		if _, err := c.Kubectl(ctx, "wait", "-n", policyCheckNamespace, "pod/signed", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s"); err != nil {
			return fmt.Errorf("the signed pod did not run to completion: %w", err)
		}
		logs, err := c.Kubectl(ctx, "logs", "-n", policyCheckNamespace, "signed")
		if err != nil {
			return err
		}
		saw = append(saw, "signed "+signed.DigestStr()[:19]+": admitted, pulled from the registry and ran: "+oneLine(logs))
		return nil
	}()
	c.downImagePolicy(ctx)
	return k.result("8. image policy: policy-controller refuses an unsigned image, admits the signed one", t, strings.Join(saw, "\n"), err)
}

// downImagePolicy removes the webhook configurations first (with the webhook gone they would
// refuse every pod of the opted-in namespaces), then stops the webhook.
func (c *Cluster) downImagePolicy(ctx context.Context) {
	if c.running(policyWebhook) {
		_, _ = c.Kubectl(ctx, "delete", "validatingwebhookconfiguration", "--ignore-not-found",
			"policy.sigstore.dev", "validating.clusterimagepolicy.sigstore.dev")
		_, _ = c.Kubectl(ctx, "delete", "mutatingwebhookconfiguration", "--ignore-not-found",
			"policy.sigstore.dev", "defaulting.clusterimagepolicy.sigstore.dev")
		_, _ = c.Kubectl(ctx, "delete", "namespace", policyCheckNamespace, "--ignore-not-found", "--wait=false")
	}
	c.stop(policyWebhook)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
