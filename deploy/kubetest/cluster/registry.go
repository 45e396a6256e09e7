package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/votingapp/voting/deploy/kubetest/supplychain"
)

// AppImageRef is the app image as the manifests name it (with the node's tag, testdata's
// "dev"); the node's containerd resolves ghcr.io through the loopback registry.
const AppImageRef = "ghcr.io/votingapp/voting:dev"

// upRegistry starts the distribution registry on a free loopback port (its address kept in
// <work>/registry.addr), pushes the app image and the Helm chart to it, and writes the
// containerd hosts file that makes the registry ghcr.io's mirror for the node.
func (c *Cluster) upRegistry(ctx context.Context) error {
	if c.Registry == "" || c.AppImage == "" || c.Root == "" {
		return fmt.Errorf("the registry binary (scripts/tool registry), the app image tarball and the chart are needed: the node pulls the app image from the registry")
	}
	addr, err := supplychain.FreeAddr()
	if err != nil {
		return err
	}
	conf, err := supplychain.WriteRegistryConfig(c.path("registry"), addr)
	if err != nil {
		return err
	}
	if err := c.startEnv("registry", supplychain.RegistryEnv, c.Registry, "serve", conf); err != nil {
		return err
	}
	if err := supplychain.WaitRegistry(ctx, addr, nil); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("registry.addr"), []byte(addr), 0o644); err != nil {
		return err
	}
	repo, tag, _ := strings.Cut(strings.TrimPrefix(AppImageRef, "ghcr.io/"), ":")
	d, err := supplychain.PushImage(ctx, c.AppImage, addr+"/"+repo+":"+tag)
	if err != nil {
		return err
	}
	c.logf("registry on http://%s: pushed %s as %s", addr, filepath.Base(c.AppImage), d)
	ch, err := supplychain.PushChart(filepath.Join(c.Root, "deploy", "helm", "voting"), "", addr, c.path("registry"))
	if err != nil {
		return err
	}
	c.Chart = &ch
	c.logf("registry: pushed the chart as %s version %s (%s)", ch.URL(), ch.Version, ch.Digest)
	// containerd's hosts file (config_path in containerd.toml): pulls of ghcr.io/... go to the
	// loopback registry over plain HTTP, and nowhere else.
	hosts := fmt.Sprintf("server = \"https://ghcr.io\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", addr)
	if err := os.MkdirAll(c.path("certs.d", "ghcr.io"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("certs.d", "ghcr.io", "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return err
	}
	// And by its own name (check 8's pods name their images by it), over plain HTTP.
	if err := os.MkdirAll(c.path("certs.d", addr), 0o755); err != nil {
		return err
	}
	return os.WriteFile(c.path("certs.d", addr, "hosts.toml"), []byte(fmt.Sprintf("server = \"http://%s\"\n", addr)), 0o644)
}

// PulledFromRegistry reports how many times the node's containerd fetched the app image's
// manifest from the registry (its access log), and fails when it never did.
func (c *Cluster) PulledFromRegistry() (string, error) {
	b, err := os.ReadFile(c.path("registry.log"))
	if err != nil {
		return "", err
	}
	repo, _, _ := strings.Cut(strings.TrimPrefix(AppImageRef, "ghcr.io/"), ":")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "/v2/"+repo+"/manifests/") && strings.Contains(line, "containerd") {
			n++
		}
	}
	if n == 0 {
		return "", fmt.Errorf("the registry's log has no request by containerd for %s's manifest: the node did not pull it", AppImageRef)
	}
	return fmt.Sprintf("the node's containerd pulled %s from the registry on loopback (%d manifest requests)", AppImageRef, n), nil
}
