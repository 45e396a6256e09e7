package kubetest

import (
	"context"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/sigstore/policy-controller/pkg/apis/glob"
	policyv1beta1 "github.com/sigstore/policy-controller/pkg/apis/policy/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// The release workflow's identity, as the keyless policy must name it.
const (
	workflowIssuer  = "https://token.actions.githubusercontent.com"
	workflowSubject = `^https://github\.com/votingapp/voting/\.github/workflows/ci\.yml@refs/(heads/main|tags/v.+)$`
	// The label policy-controller's webhook selects namespaces by.
	policyIncludeLabel = "policy.sigstore.dev/include"
)

// The renderings with the image policy: the keyless one of each tool and the key variant.
const (
	kustomizeImagePolicy    = "kustomize-tests-image-policy"
	kustomizeImagePolicyKey = "kustomize-tests-image-policy-key"
	helmImagePolicy         = "helm-image-policy"
)

// imagePolicies returns a rendering's ClusterImagePolicies: the one for the app's image (named
// *-images) and the static pass for the other images (*-unverified-images), failing when there
// are others.
func imagePolicies(t *testing.T, name string, objs []object) (signed, unverified *policyv1beta1.ClusterImagePolicy) {
	t.Helper()
	for _, p := range ofKind[*policyv1beta1.ClusterImagePolicy](objs) {
		switch {
		case strings.HasSuffix(p.Name, "-unverified-images"):
			unverified = p
		case strings.HasSuffix(p.Name, "-images"):
			signed = p
		default:
			t.Errorf("%s: unexpected ClusterImagePolicy %s", name, p.Name)
		}
	}
	if signed == nil || unverified == nil {
		t.Fatalf("%s: want the policies *-images and *-unverified-images, got %v and %v", name, signed, unverified)
	}
	return signed, unverified
}

// matches tells whether any of the policy's globs matches image, by policy-controller's own
// glob matching (the webhook's).
func matches(t *testing.T, p *policyv1beta1.ClusterImagePolicy, image string) bool {
	t.Helper()
	for _, g := range p.Spec.Images {
		ok, err := glob.Match(g.Glob, image)
		if err != nil {
			t.Fatalf("%s: glob %q: %v", p.Name, g.Glob, err)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestImagePolicyOnlyWhenAskedFor: the policy is opt-in. Only the renderings with the component
// or imagePolicy.enabled have ClusterImagePolicies and an opted-in namespace.
func TestImagePolicyOnlyWhenAskedFor(t *testing.T) {
	with := map[string]bool{kustomizeImagePolicy: true, kustomizeImagePolicyKey: true, helmImagePolicy: true}
	for _, r := range renderAll(t) {
		n := len(ofKind[*policyv1beta1.ClusterImagePolicy](r.Objects))
		if with[r.Name] && n != 2 {
			t.Errorf("%s: %d ClusterImagePolicies, want 2", r.Name, n)
		}
		if !with[r.Name] && n != 0 {
			t.Errorf("%s: %d ClusterImagePolicies without the image policy asked for", r.Name, n)
		}
		for _, ns := range ofKind[*corev1.Namespace](r.Objects) {
			got := ns.Labels[policyIncludeLabel]
			if with[r.Name] && got != "true" {
				t.Errorf("%s: namespace %s has %s=%q, want \"true\": policy-controller would judge none of its pods", r.Name, ns.Name, policyIncludeLabel, got)
			}
			if !with[r.Name] && got != "" {
				t.Errorf("%s: namespace %s opted into image policies without the policy", r.Name, ns.Name)
			}
		}
	}
	// The kustomize renderings have the namespace object to label; Helm's release namespace is
	// labelled by hand (NOTES.txt says how).
	for _, name := range []string{kustomizeImagePolicy, kustomizeImagePolicyKey} {
		if len(ofKind[*corev1.Namespace](target(t, name).Objects)) != 1 {
			t.Errorf("%s: want the one Namespace, labelled", name)
		}
	}
	notes, err := render.HelmNotes(root+"/deploy/helm/voting", []string{root + "/deploy/helm/values/image-policy.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "kubectl label namespace voting policy.sigstore.dev/include=true"; !strings.Contains(notes, want) {
		t.Errorf("helm NOTES lack %q:\n%s", want, notes)
	}
}

// TestImagePolicyCoversExactlyOurImage: the signed policy takes the app's image with any tag
// or digest, and nothing else; the pass policy takes the rendering's other images and not
// ours; every image the rendering's pods run is matched by one of the two (policy-controller
// refuses an image no policy matches).
func TestImagePolicyCoversExactlyOurImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	ours := []string{
		"ghcr.io/votingapp/voting", // :latest
		"ghcr.io/votingapp/voting:0.1.0",
		"ghcr.io/votingapp/voting@" + digest, // as the webhook sees it after resolving the tag
		"ghcr.io/votingapp/voting:0.1.0@" + digest,
	}
	notOurs := []string{
		"ghcr.io/votingapp/voting-other:0.1.0",
		"ghcr.io/votingapp/votingx:0.1.0",
		"ghcr.io/votingapp/voting/sub:0.1.0",
		"ghcr.io/votingapp/charts/voting:0.2.0",
		"ghcr.io/someone/voting:0.1.0",
		"docker.io/votingapp/voting:0.1.0",
		"ghcr.io/votingapp/voting.evil.example/x:1",
		"redis:7.4.5-alpine",
	}
	for _, name := range []string{kustomizeImagePolicy, kustomizeImagePolicyKey, helmImagePolicy} {
		r := target(t, name)
		signed, unverified := imagePolicies(t, name, r.Objects)
		for _, image := range ours {
			if !matches(t, signed, image) {
				t.Errorf("%s: %s does not cover %s", name, signed.Name, image)
			}
			if matches(t, unverified, image) {
				t.Errorf("%s: %s admits our image %s by name", name, unverified.Name, image)
			}
		}
		for _, image := range notOurs {
			if matches(t, signed, image) {
				t.Errorf("%s: %s covers %s, which is not our image", name, signed.Name, image)
			}
		}
		for _, p := range podTemplates(r.Objects) {
			for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
				s, u := matches(t, signed, c.Image), matches(t, unverified, c.Image)
				switch {
				case isAppImage(c.Image) && !s:
					t.Errorf("%s: %s/%s runs %s, which the signed policy does not cover", name, p.Owner, c.Name, c.Image)
				case !isAppImage(c.Image) && !u:
					t.Errorf("%s: %s/%s runs %s, which no policy matches: policy-controller would refuse it", name, p.Owner, c.Name, c.Image)
				}
			}
		}
	}
}

// TestImagePolicyNamesTheReleaseWorkflow: the keyless policy accepts exactly the workflow's
// certificate: GitHub's issuer, ci.yml of this repository on main or on a v* tag. And the
// policy is valid by policy-controller's own validation, the one its webhook runs on a
// ClusterImagePolicy.
func TestImagePolicyNamesTheReleaseWorkflow(t *testing.T) {
	for _, name := range []string{kustomizeImagePolicy, helmImagePolicy} {
		signed, _ := imagePolicies(t, name, target(t, name).Objects)
		if len(signed.Spec.Authorities) != 1 {
			t.Fatalf("%s: %d authorities, want the one keyless", name, len(signed.Spec.Authorities))
		}
		a := signed.Spec.Authorities[0]
		if a.Keyless == nil || a.Key != nil || a.Static != nil {
			t.Fatalf("%s: authority %+v, want keyless only", name, a)
		}
		if a.Keyless.URL == nil || a.Keyless.URL.String() != "https://fulcio.sigstore.dev" {
			t.Errorf("%s: keyless URL %v, want the public Fulcio", name, a.Keyless.URL)
		}
		want := []policyv1beta1.Identity{{Issuer: workflowIssuer, SubjectRegExp: workflowSubject}}
		if !reflect.DeepEqual(a.Keyless.Identities, want) {
			t.Errorf("%s: identities %+v,\nwant %+v", name, a.Keyless.Identities, want)
		}
		// The legacy signature format (cosign's .sig tag): the release workflow signs in it.
		if a.SignatureFormat != "" {
			t.Errorf("%s: signatureFormat %q, want the default (legacy)", name, a.SignatureFormat)
		}
	}
	// The identity is the one the workflow signs as (and checks itself after signing).
	ci, err := os.ReadFile(root + "/.github/workflows/ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"SIGNER_IDENTITY": workflowSubject, "SIGNER_ISSUER": workflowIssuer} {
		got := "missing"
		if m := regexp.MustCompile(`(?m)^\s+` + key + `: '?([^'\s]+)'?$`).FindSubmatch(ci); m != nil {
			got = string(m[1])
		}
		if got != want {
			t.Errorf("ci.yml's %s is %s, the policy names %s", key, got, want)
		}
	}
	// And it signs the image in the format the policy reads: policy-controller v0.13 reads
	// cosign's legacy format unless signatureFormat says "bundle", cosign v3 writes the bundle
	// format unless told otherwise.
	sign := regexp.MustCompile(`(?m)^\s+cosign sign (.*)"\$IMAGE@\$DIGEST"$`).FindSubmatch(ci)
	if sign == nil {
		t.Error(`ci.yml has no "cosign sign ... "$IMAGE@$DIGEST"" line`)
	} else if !strings.Contains(string(sign[1]), "--new-bundle-format=false") {
		t.Errorf("ci.yml signs the image with %q: without --new-bundle-format=false cosign v3 writes the bundle format, which the policy does not read", sign[0])
	}
	re := regexp.MustCompile(workflowSubject)
	for subject, want := range map[string]bool{
		"https://github.com/votingapp/voting/.github/workflows/ci.yml@refs/heads/main":               true,
		"https://github.com/votingapp/voting/.github/workflows/ci.yml@refs/tags/v0.2.0":              true,
		"https://github.com/votingapp/voting/.github/workflows/ci.yml@refs/heads/feature":            false,
		"https://github.com/votingapp/voting/.github/workflows/ci.yml@refs/pull/7/merge":             false,
		"https://github.com/votingapp/voting/.github/workflows/ci.yml@refs/tags/0.2.0":               false,
		"https://github.com/votingapp/voting/.github/workflows/other.yml@refs/heads/main":            false,
		"https://github.com/votingapp/voting-fork/.github/workflows/ci.yml@refs/heads/main":          false,
		"https://github.com/someone/voting/.github/workflows/ci.yml@refs/heads/main":                 false,
		"https://githubXcom/votingapp/voting/.github/workflows/ci.yml@refs/heads/main":               false,
		"https://github.com/votingapp/voting/.github/workflows/ci.yml@refs/heads/main-but-not-quite": false,
	} {
		if got := re.MatchString(subject); got != want {
			t.Errorf("subject %s: accepted %v, want %v", subject, got, want)
		}
	}
	for _, name := range []string{kustomizeImagePolicy, kustomizeImagePolicyKey, helmImagePolicy} {
		for _, p := range ofKind[*policyv1beta1.ClusterImagePolicy](target(t, name).Objects) {
			p = p.DeepCopy()
			ctx := context.Background()
			p.SetDefaults(ctx)
			if err := p.Validate(ctx); err != nil {
				t.Errorf("%s: %s is invalid: %v", name, p.Name, err)
			}
		}
	}
}

// TestImagePolicyKeyVariant: the key variants (tests/image-policy-key, imagePolicy.key) carry
// the key and only the key: no keyless authority and no transparency log, so that a key made
// for a test decides alone.
func TestImagePolicyKeyVariant(t *testing.T) {
	pub, err := os.ReadFile(root + "/deploy/k8s/tests/image-policy-key/cosign.pub")
	if err != nil {
		t.Fatal(err)
	}
	helmOut, err := render.RenderHelm(root+"/deploy/helm/voting", nil, map[string]any{
		"imagePolicy": map[string]any{"enabled": true, "key": string(pub)}})
	if err != nil {
		t.Fatal(err)
	}
	helmObjs, err := decodeStrict(helmOut)
	if err != nil {
		t.Fatal(err)
	}
	for name, objs := range map[string][]object{
		kustomizeImagePolicyKey:     target(t, kustomizeImagePolicyKey).Objects,
		"helm with imagePolicy.key": helmObjs,
	} {
		signed, _ := imagePolicies(t, name, objs)
		if len(signed.Spec.Authorities) != 1 {
			t.Fatalf("%s: %d authorities, want the key's", name, len(signed.Spec.Authorities))
		}
		a := signed.Spec.Authorities[0]
		if a.Key == nil || a.Keyless != nil || a.Static != nil || a.CTLog != nil {
			t.Fatalf("%s: authority %+v, want a key without a transparency log", name, a)
		}
		if strings.TrimSpace(a.Key.Data) != strings.TrimSpace(string(pub)) {
			t.Errorf("%s: key data %q, want cosign.pub's %q", name, a.Key.Data, pub)
		}
	}
	// A value that is no PEM public key is refused by the schema.
	if _, err := render.RenderHelm(root+"/deploy/helm/voting", nil, map[string]any{
		"imagePolicy": map[string]any{"enabled": true, "key": "ssh-ed25519 AAAA"}}); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("imagePolicy.key that is no PEM key: %v", err)
	}
}

// TestImagePolicyKustomizeAndHelmAgree: both tools render the same signed policy (images and
// authorities, keyless and with a key), and the chart passes at least the images the
// component passes (plus the `helm test` pod's).
func TestImagePolicyKustomizeAndHelmAgree(t *testing.T) {
	pub, err := os.ReadFile(root + "/deploy/k8s/tests/image-policy-key/cosign.pub")
	if err != nil {
		t.Fatal(err)
	}
	helmKeyOut, err := render.RenderHelm(root+"/deploy/helm/voting", []string{root + "/deploy/helm/values/image-policy.yaml"},
		map[string]any{"imagePolicy": map[string]any{"enabled": true, "key": string(pub)}})
	if err != nil {
		t.Fatal(err)
	}
	helmKey, err := decodeStrict(helmKeyOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range []struct {
		name       string
		kust, helm []object
	}{
		{"keyless", target(t, kustomizeImagePolicy).Objects, target(t, helmImagePolicy).Objects},
		{"key", target(t, kustomizeImagePolicyKey).Objects, helmKey},
	} {
		ks, ku := imagePolicies(t, "kustomize "+pair.name, pair.kust)
		hs, hu := imagePolicies(t, "helm "+pair.name, pair.helm)
		// The key's PEM is a block scalar in one and a literal in the other: compare it trimmed.
		norm := func(p *policyv1beta1.ClusterImagePolicy) policyv1beta1.ClusterImagePolicySpec {
			s := *p.Spec.DeepCopy()
			for i := range s.Authorities {
				if s.Authorities[i].Key != nil {
					s.Authorities[i].Key.Data = strings.TrimSpace(s.Authorities[i].Key.Data)
				}
			}
			return s
		}
		if k, h := norm(ks), norm(hs); !reflect.DeepEqual(k, h) {
			ky, _ := yaml.Marshal(k)
			hy, _ := yaml.Marshal(h)
			t.Errorf("%s: the signed policies differ:\nkustomize:\n%s\nhelm:\n%s", pair.name, ky, hy)
		}
		if !reflect.DeepEqual(ku.Spec.Authorities, hu.Spec.Authorities) {
			t.Errorf("%s: the pass policies' authorities differ: %+v vs %+v", pair.name, ku.Spec.Authorities, hu.Spec.Authorities)
		}
		helmGlobs := map[string]bool{}
		for _, g := range hu.Spec.Images {
			helmGlobs[g.Glob] = true
		}
		for _, g := range ku.Spec.Images {
			if !helmGlobs[g.Glob] {
				t.Errorf("%s: the chart does not pass %s, which the component does", pair.name, g.Glob)
			}
		}
	}
}
