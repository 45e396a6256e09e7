package supplychain

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// policyRoot is the repository's top directory, seen from this package.
var policyRoot = filepath.Join("..", "..", "..")

// The policy's proof against signed images, with policy-controller's own verification, is in
// Run (make e2e-supplychain), on the image built from the Dockerfile in a real registry.

// TestWriteKeyPolicy needs no tools: both renderings give the tester a file of exactly the two
// ClusterImagePolicies, with the key and the repository asked for, and refuse what is no key.
func TestWriteKeyPolicy(t *testing.T) {
	pub, err := os.ReadFile(filepath.Join(policyRoot, "deploy", "k8s", "tests", "image-policy-key", "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, from := range []render.Kind{render.Kustomize, render.Helm} {
		path := filepath.Join(dir, string(from)+".yaml")
		if err := WriteKeyPolicy(policyRoot, from, pub, "127.0.0.1:5000/votingapp/voting", path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if n := strings.Count(text, "kind: ClusterImagePolicy"); n != 2 || strings.Count(text, "\nkind: ") != 2 {
			t.Errorf("%s: want the two ClusterImagePolicies and nothing else:\n%s", from, text)
		}
		pemBody := strings.Split(strings.TrimSpace(string(pub)), "\n")[1]
		for _, want := range []string{"127.0.0.1:5000/votingapp/voting:*", "127.0.0.1:5000/votingapp/voting@*", "release-key", pemBody} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: the policy lacks %q:\n%s", from, want, text)
			}
		}
		if strings.Contains(text, PolicyRepository) || regexp.MustCompile(`(?m)^\s*-?\s*keyless:`).MatchString(text) {
			t.Errorf("%s: the policy still names %s or a keyless authority:\n%s", from, PolicyRepository, text)
		}
		if err := WriteKeyPolicy(policyRoot, from, []byte("ssh-ed25519 AAAA"), "", path); err == nil {
			t.Errorf("%s: a key that is no PEM public key was taken", from)
		}
	}
	// The repository's own cosign.pub is untouched by the kustomize rendering's copy.
	again, err := os.ReadFile(filepath.Join(policyRoot, "deploy", "k8s", "tests", "image-policy-key", "cosign.pub"))
	if err != nil || string(again) != string(pub) {
		t.Errorf("tests/image-policy-key/cosign.pub changed: %v", err)
	}
}
