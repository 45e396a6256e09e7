package supplychain

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// policyRoot is the repository's top directory, seen from this package. (The helpers here
// are prefixed: other files of the package have helpers of their own.)
var policyRoot = filepath.Join("..", "..", "..")

// policyTools returns the policy-tester and cosign binaries named by VOTING_POLICY_TESTER
// (`scripts/tool policy-tester`) and VOTING_COSIGN. Without them the test is skipped, except
// under CI, where a skipped proof would hide a missing check.
func policyTools(t *testing.T) (tester, cosign string) {
	t.Helper()
	tester, cosign = os.Getenv("VOTING_POLICY_TESTER"), os.Getenv("VOTING_COSIGN")
	if tester != "" && cosign != "" {
		return tester, cosign
	}
	why := "set VOTING_POLICY_TESTER (scripts/tool policy-tester) and VOTING_COSIGN (a cosign v3 binary) to prove the image policy"
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
	return "", ""
}

// TestKeyPolicyAdmitsOnlyImagesSignedWithItsKey proves the image policy with policy-controller's
// own verification: images pushed to a registry on 127.0.0.1, one signed with the policy's
// key, one unsigned and one signed with another key. Only the first is admitted, by the
// kustomize and the Helm rendering alike.
func TestKeyPolicyAdmitsOnlyImagesSignedWithItsKey(t *testing.T) {
	tester, cosign := policyTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	repo := strings.TrimPrefix(reg.URL, "http://") + "/votingapp/voting"

	dir := t.TempDir()
	ours := policyKeyPair(ctx, t, cosign, filepath.Join(dir, "ours"))
	policyKeyPair(ctx, t, cosign, filepath.Join(dir, "theirs"))

	signed := policyPush(t, repo+":signed")
	policySign(ctx, t, cosign, filepath.Join(dir, "ours"), signed)
	unsigned := policyPush(t, repo+":unsigned")
	other := policyPush(t, repo+":other-key")
	policySign(ctx, t, cosign, filepath.Join(dir, "theirs"), other)

	for _, from := range []render.Kind{render.Kustomize, render.Helm} {
		policy := filepath.Join(dir, string(from)+".yaml")
		if err := WriteKeyPolicy(policyRoot, from, ours, repo, policy); err != nil {
			t.Fatal(err)
		}
		if err := CheckPolicy(ctx, tester, policy, signed); err != nil {
			t.Errorf("%s: the image signed with the policy's key was refused: %v", from, err)
		}
		for what, image := range map[string]string{"unsigned": unsigned, "signed with another key": other} {
			err := CheckPolicy(ctx, tester, policy, image)
			if err == nil {
				t.Errorf("%s: the image %s was admitted", from, what)
				continue
			}
			t.Logf("%s: %s refused: %v", from, what, err)
		}
	}
}

// policyKeyPair makes a cosign key pair without a password in dir and returns the public key.
func policyKeyPair(ctx context.Context, t *testing.T, cosign, dir string) []byte {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	policyRun(ctx, t, dir, cosign, "generate-key-pair")
	pub, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// policyPush writes a random image to ref and returns its reference by digest.
func policyPush(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(digest.String()).String()
}

// policySign signs image with the key in dir, without a transparency log (the registry is local and
// the policy's key authority checks none), in cosign's legacy format: a signature image under
// the tag sha256-<digest>.sig. policy-controller v0.13 verifies a key authority only in that
// format, and cosign v3 writes the new bundle format unless told otherwise (a hidden flag).
func policySign(ctx context.Context, t *testing.T, cosign, dir, image string) {
	t.Helper()
	policyRun(ctx, t, dir, cosign, "sign", "--key", filepath.Join(dir, "cosign.key"), "--new-bundle-format=false",
		"--use-signing-config=false", "--tlog-upload=false", "--allow-http-registry", "--yes", image)
}

func policyRun(ctx context.Context, t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// An empty password: the keys live only as long as the test.
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

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
