package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// TestNodeDeploymentsRender: what `make e2e-cluster` deploys renders, with the image built
// here (tag dev), HTTPRoutes and a Gateway whose listener is Traefik's entry point, and HPAs
// that scale down within the check's time.
func TestNodeDeploymentsRender(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	helm, err := render.RenderHelm(filepath.Join(root, "deploy", "helm", "voting"), []string{
		filepath.Join(root, "deploy", "helm", "values", "prod.yaml"),
		filepath.Join("testdata", "helm-node.yaml"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kust, err := render.RenderKustomize(filepath.Join("testdata", "kustomize"))
	if err != nil {
		t.Fatal(err)
	}
	for name, y := range map[string]string{"helm": string(helm), "kustomize": string(kust)} {
		for _, want := range []string{
			"image: ghcr.io/votingapp/voting:dev",
			"kind: HTTPRoute",
			"kind: Gateway\n",
			fmt.Sprintf("port: %d", GatewayPort),
			"gatewayClassName: " + GatewayClass,
			"stabilizationWindowSeconds: 30",
			"kind: NetworkPolicy",
		} {
			if !strings.Contains(y, want) {
				t.Errorf("%s: no %q in the rendering", name, want)
			}
		}
	}
}
