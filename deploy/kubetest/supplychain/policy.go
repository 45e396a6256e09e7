package supplychain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// CheckPolicy runs sigstore policy-controller's offline tester (testerBin, from
// `scripts/tool policy-tester`) on image against the ClusterImagePolicies in policyFile: the
// verification the admission webhook runs, without a cluster. It returns nil when the image is
// admitted and an error carrying the tester's output when it is refused or the policy is
// invalid. Give the image by digest, as the webhook sees it after resolving a tag. A registry
// on localhost or 127.0.0.1 is reached over plain HTTP (go-containerregistry's rule for
// loopback names), so a test registry needs no TLS.
func CheckPolicy(ctx context.Context, testerBin, policyFile, image string) error {
	cmd := exec.CommandContext(ctx, testerBin, "-policy", policyFile, "-image", image, "-log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("policy-tester %s: %w\n%s", image, ctx.Err(), out.String())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		// The tester exits 1 both when the image is refused (a JSON line of errors on stdout) and
		// when the policy is invalid (a log line): either way the image would not be admitted.
		return fmt.Errorf("policy-tester refused %s (exit %d):\n%s", image, exit.ExitCode(), strings.TrimSpace(out.String()))
	}
	if err != nil {
		return fmt.Errorf("running policy-tester: %w", err)
	}
	return nil
}

// PolicyRepository is the repository the image policy covers.
const PolicyRepository = "ghcr.io/votingapp/voting"

// WriteKeyPolicy renders the image policy with a key authority for publicKeyPEM (a cosign
// public key, `cosign generate-key-pair`'s cosign.pub) and writes its ClusterImagePolicies to
// path, the file CheckPolicy takes. from says which rendering: render.Kustomize renders
// deploy/k8s/tests/image-policy-key with its cosign.pub replaced by the key (in a copy of
// deploy/k8s), render.Helm the chart with imagePolicy.enabled and imagePolicy.key. root is
// the repository's top directory.
//
// repository, when not empty, takes the place of ghcr.io/votingapp/voting in the policy's
// globs, e.g. "127.0.0.1:5000/votingapp/voting" for an image in a test registry; everything
// else is the shipped policy's, so what the tester admits there it admits in ghcr.io.
func WriteKeyPolicy(root string, from render.Kind, publicKeyPEM []byte, repository, path string) error {
	if !bytes.Contains(publicKeyPEM, []byte("-----BEGIN PUBLIC KEY-----")) {
		return errors.New("the key is not a PEM public key")
	}
	var out []byte
	var err error
	switch from {
	case render.Kustomize:
		out, err = renderKustomizeWithKey(root, publicKeyPEM)
	case render.Helm:
		out, err = render.RenderHelm(filepath.Join(root, "deploy", "helm", "voting"), nil, map[string]any{
			"imagePolicy": map[string]any{"enabled": true, "key": string(publicKeyPEM)},
		})
	default:
		return fmt.Errorf("unknown rendering %q", from)
	}
	if err != nil {
		return err
	}
	policies, err := ClusterImagePolicies(out)
	if err != nil {
		return err
	}
	if repository != "" {
		var n int
		for _, suffix := range []string{":*", "@*"} {
			old := "glob: " + PolicyRepository + suffix
			n += bytes.Count(policies, []byte(old))
			// Both renderings quote the glob or not; the replacement keeps whichever they use.
			policies = bytes.ReplaceAll(policies, []byte(old), []byte("glob: "+repository+suffix))
			quoted := `glob: "` + PolicyRepository + suffix + `"`
			n += bytes.Count(policies, []byte(quoted))
			policies = bytes.ReplaceAll(policies, []byte(quoted), []byte(`glob: "`+repository+suffix+`"`))
		}
		if n != 2 {
			return fmt.Errorf("found %d globs of %s in the policy, want 2 (its tags and its digests)", n, PolicyRepository)
		}
	}
	return os.WriteFile(path, policies, 0o644)
}

// renderKustomizeWithKey renders tests/image-policy-key from a copy of deploy/k8s whose
// cosign.pub is the key: the kustomization reads the key from that file, and the repository's
// own copy stays untouched.
func renderKustomizeWithKey(root string, publicKeyPEM []byte) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "image-policy-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	k8s := filepath.Join(root, "deploy", "k8s")
	err = filepath.WalkDir(k8s, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(k8s, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(tmp, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, "tests", "image-policy-key")
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), publicKeyPEM, 0o644); err != nil {
		return nil, err
	}
	return render.RenderKustomize(dir)
}

// ClusterImagePolicies returns the ClusterImagePolicy documents of a rendering, the only kind
// policy-tester's policy file may hold besides Secrets.
func ClusterImagePolicies(rendering []byte) ([]byte, error) {
	all, err := render.Documents(rendering)
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	for _, doc := range all {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, err
		}
		if meta.Kind == "ClusterImagePolicy" && strings.HasPrefix(meta.APIVersion, "policy.sigstore.dev/") {
			docs = append(docs, bytes.TrimSpace(doc))
		}
	}
	if len(docs) == 0 {
		return nil, errors.New("the rendering has no ClusterImagePolicy")
	}
	return append(bytes.Join(docs, []byte("\n---\n")), '\n'), nil
}
