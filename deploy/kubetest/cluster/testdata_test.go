package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

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
	// Every object of the kustomization in the app's namespace: one without would land in
	// "default" (the first run on a node had a second set of HTTPRoutes there, whose missing
	// backends made Traefik answer 500).
	for doc := range strings.SplitSeq(string(kust), "\n---\n") {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind != "Namespace" && o.Metadata.Namespace != "voting" {
			t.Errorf("kustomize: %s/%s in namespace %q, want voting", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
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

// TestDatastoreImagesAgreeWithCompose: the Redis and PostgreSQL images the Kubernetes files
// run are the ones the compose file runs, so that every deployment form (and every e2e run)
// uses the same server versions.
func TestDatastoreImagesAgreeWithCompose(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	compose, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, m := range regexp.MustCompile(`(?m)^\s+image:\s+"?((?:redis|postgres):[^"\s]+)`).FindAllStringSubmatch(string(compose), -1) {
		images = append(images, m[1])
	}
	if len(images) != 2 {
		t.Fatalf("compose.yaml: want a redis and a postgres image, found %v", images)
	}
	helm, err := render.RenderHelm(filepath.Join(root, "deploy", "helm", "voting"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	kust, err := render.RenderKustomize(filepath.Join(root, "deploy", "k8s", "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		for name, y := range map[string][]byte{"helm": helm, "kustomize base": kust} {
			if !strings.Contains(string(y), "image: "+img+"\n") && !strings.Contains(string(y), `image: "`+img+`"`) {
				t.Errorf("%s does not run %s, the image compose.yaml runs", name, img)
			}
		}
	}
}
