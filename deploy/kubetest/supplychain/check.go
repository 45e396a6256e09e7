package supplychain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// Published names, as the README's commands spell them.
const (
	PublishedImage = "ghcr.io/votingapp/voting"
	PublishedChart = "ghcr.io/votingapp/charts/voting"
	// ImagePath is where the Dockerfile puts the binary: the file the tampered image changes.
	ImagePath = "/voting"
	// The release's checksums file and its signature bundle (.github/workflows/ci.yml).
	ChecksumsFile = "SHA256SUMS"
	ChecksumsSig  = "SHA256SUMS.sigstore.json"
)

// Config is what Run needs.
type Config struct {
	// Root is the repository's top directory (the chart, the README).
	Root string
	// Work holds the registry's storage, keys, SBOMs and logs.
	Work string
	// Cosign, Syft, Registry, PolicyTester are the binaries (scripts/tool
	// cosign|syft|registry|policy-tester).
	Cosign, Syft, Registry, PolicyTester string
	// ImageTar is the app image (docker save of the image built from the Dockerfile).
	ImageTar string
	// Binary is the voting binary, which stands for a release binary.
	Binary string
	// Out receives one line per check.
	Out io.Writer
}

// Result is what Run leaves for later checks: the registry, still running, with the signed
// image and chart, and the key pair that signed them.
type Result struct {
	Registry *Registry
	Image    name.Digest
	Chart    Chart
	Key, Pub string
	// OtherPub is the public key of the second key pair, which signed nothing of ours.
	OtherPub string
	// Unsigned is an image in the same repository that nobody signed.
	Unsigned name.Digest
}

// Run is the offline supply-chain check. It returns the result with the registry running
// (the caller stops it) or the first failure.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(cfg.Out, "supplychain: [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	home := filepath.Join(cfg.Work, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	cosign := Cosign{Bin: cfg.Cosign, Home: home}
	syft := Syft{Bin: cfg.Syft, Home: home}

	reg, err := StartRegistry(ctx, cfg.Registry, filepath.Join(cfg.Work, "registry"))
	if err != nil {
		return nil, err
	}
	res := &Result{Registry: reg}
	ok := false
	defer func() {
		if !ok {
			reg.Stop()
		}
	}()
	say("distribution registry on http://%s", reg.Addr)
	repo := reg.Addr + "/votingapp/voting"

	// The artifacts: the image and the chart pushed, a release's files made.
	if res.Image, err = PushImage(ctx, cfg.ImageTar, repo+":dev"); err != nil {
		return nil, err
	}
	say("pushed the image built from the Dockerfile: %s", res.Image)
	if res.Chart, err = PushChart(filepath.Join(cfg.Root, "deploy", "helm", "voting"), "", reg.Addr, cfg.Work); err != nil {
		return nil, err
	}
	say("helm push: %s version %s, %s", res.Chart.URL(), res.Chart.Version, res.Chart.Digest)
	release := filepath.Join(cfg.Work, "release")
	if err := makeRelease(ctx, syft, cfg.Binary, release); err != nil {
		return nil, err
	}
	say("release files: %s", strings.Join(listDir(release), ", "))

	// The SBOM of the image in the registry, by digest.
	sbom := filepath.Join(cfg.Work, "sbom.spdx.json")
	if err := syft.SBOM(ctx, "registry:"+res.Image.String(), sbom); err != nil {
		return nil, err
	}
	img, err := Pull(ctx, res.Image.String())
	if err != nil {
		return nil, err
	}
	bin, err := ReadFile(img, ImagePath)
	if err != nil {
		return nil, err
	}
	sbomSummary, err := checkSBOM(sbom, bin)
	if err != nil {
		return nil, fmt.Errorf("the image's SBOM: %w", err)
	}
	say("syft SBOM of the image: %s", sbomSummary)

	// Signing, with a key pair made for this run; another key pair signs a copy of the chart.
	if res.Key, res.Pub, err = cosign.KeyPair(ctx, filepath.Join(cfg.Work, "keys")); err != nil {
		return nil, err
	}
	var otherKey string
	if otherKey, res.OtherPub, err = cosign.KeyPair(ctx, filepath.Join(cfg.Work, "other-keys")); err != nil {
		return nil, err
	}
	// A signing config with no services: no Fulcio, no transparency log, no timestamp
	// authority, none of which is reachable here; the key is all there is.
	offline := filepath.Join(cfg.Work, "signing-config.json")
	if _, err := cosign.Run(ctx, "signing-config", "create", "--out", offline); err != nil {
		return nil, err
	}
	sc := "--signing-config=" + offline
	// The image is signed as the release workflow signs it: in cosign's legacy format (a
	// signature image under the tag sha256-<digest>.sig, the SBOM attestation under .att), the
	// one the image policy's policy-controller reads; chart and checksums in the bundle format.
	// Both for a reason: cosign verify, when an image has bundles, reads only those and takes
	// an attestation bundle for a signature, so a bundle-format attestation beside a legacy
	// signature would pass verify even without the signature.
	legacy := []string{"--new-bundle-format=false", "--use-signing-config=false", "--tlog-upload=false"}
	for _, args := range [][]string{
		append([]string{"sign", "--key", res.Key, res.Image.String()}, legacy...),
		append([]string{"attest", "--key", res.Key, "--type", "spdxjson", "--predicate", sbom, res.Image.String()}, legacy...),
		{"sign", "--key", res.Key, sc, res.Chart.Ref()},
		{"sign-blob", "--key", res.Key, sc, "--bundle", filepath.Join(release, ChecksumsSig), filepath.Join(release, ChecksumsFile)},
	} {
		if _, err := cosign.Run(ctx, args...); err != nil {
			return nil, err
		}
	}
	say("signed with the run's key: the image and its SBOM attestation, the chart, %s", ChecksumsFile)

	// The README's commands pass on what was signed.
	readme, err := os.ReadFile(filepath.Join(cfg.Root, "README.md"))
	if err != nil {
		return nil, err
	}
	cmds, err := VerifyCommands(readme)
	if err != nil {
		return nil, err
	}
	replace := []string{
		PublishedChart, res.Chart.Repo,
		PublishedImage, repo,
		"sha256:<digest>", res.Image.DigestStr(),
		"<version>", res.Chart.Version,
	}
	keyFlags := []string{"--key", res.Pub, "--insecure-ignore-tlog"}
	for _, c := range cmds {
		local, err := Localize(c, replace, keyFlags)
		if err != nil {
			return nil, err
		}
		out, err := runReadme(ctx, cosign, release, res.Chart, local)
		if err != nil {
			return nil, fmt.Errorf("the README's command %q failed: %w", strings.Join(c, " "), err)
		}
		// cosign verify also accepts an attestation for a signature (when it finds bundles it
		// reads only those): a verify must have found a signature proper.
		if c[1] == "verify" && strings.Contains(out, `"type":"https://cosign.sigstore.dev/attestation/v1"`) {
			return nil, fmt.Errorf("the README's %q passed on an attestation, not on a signature:\n%s", strings.Join(c, " "), out)
		}
		say("README: %s: ok (%s)", strings.Join(c[:min(2, len(c))], " "), summary(out))
	}

	// ... and fail on everything else.
	tampered, err := FlipByte(img, ImagePath)
	if err != nil {
		return nil, err
	}
	// Pushed under the signed tag, with the original signature copied beside it: an attacker
	// who can push, replaying the signature they found.
	td, err := Push(ctx, tampered, repo+":dev")
	if err != nil {
		return nil, err
	}
	copied, err := copySignature(ctx, res.Image, td)
	if err != nil {
		return nil, err
	}
	if copied == 0 {
		return nil, fmt.Errorf("no signature of %s was found to copy", res.Image)
	}
	unsignedImg, err := Relabel(img, "org.opencontainers.image.description", "never signed")
	if err != nil {
		return nil, err
	}
	if res.Unsigned, err = Push(ctx, unsignedImg, repo+":unsigned"); err != nil {
		return nil, err
	}
	otherImg, err := Relabel(img, "org.opencontainers.image.description", "signed by another key")
	if err != nil {
		return nil, err
	}
	otherSigned, err := Push(ctx, otherImg, repo+":other-key")
	if err != nil {
		return nil, err
	}
	if _, err := cosign.Run(ctx, append([]string{"sign", "--key", otherKey, otherSigned.String()}, legacy...)...); err != nil {
		return nil, err
	}
	other, err := PushChart(filepath.Join(cfg.Root, "deploy", "helm", "voting"), res.Chart.Version+"-other", reg.Addr, filepath.Join(cfg.Work, "other-chart"))
	if err != nil {
		return nil, err
	}
	if _, err := cosign.Run(ctx, "sign", "--key", otherKey, sc, other.Ref()); err != nil {
		return nil, err
	}
	badSums := filepath.Join(cfg.Work, "tampered-"+ChecksumsFile)
	if err := flipFileByte(filepath.Join(release, ChecksumsFile), badSums); err != nil {
		return nil, err
	}
	verify := []string{"verify", "--key", res.Pub, "--insecure-ignore-tlog"}
	// Each must fail for its own reason, not for any error (a registry that does not answer
	// would fail them all): the phrase cosign says it with.
	for _, c := range []struct {
		what, why string
		args      []string
	}{
		{"the image with one byte of " + ImagePath + " changed (" + td.DigestStr()[:19] + "), the original's signatures and attestation copied to it",
			"invalid or missing digest in claim", append(verify, td.String())},
		{"the same tampered image by the tag it replaced (:dev)", "invalid or missing digest in claim", append(verify, repo+":dev")},
		{"an unsigned image (" + res.Unsigned.DigestStr()[:19] + ")", "no signatures found", append(verify, res.Unsigned.String())},
		{"the unsigned image's SBOM attestation", "no matching attestations",
			[]string{"verify-attestation", "--key", res.Pub, "--insecure-ignore-tlog", "--type", "spdxjson", res.Unsigned.String()}},
		{"an image signed by another key (" + otherSigned.DigestStr()[:19] + ")", "no matching signatures", append(verify, otherSigned.String())},
		{"a chart signed by another key (" + other.Version + ")", "accepted signatures do not match threshold", append(verify, other.Ref())},
		{"our chart against the other key", "accepted signatures do not match threshold",
			[]string{"verify", "--key", res.OtherPub, "--insecure-ignore-tlog", res.Chart.Ref()}},
		{"a " + ChecksumsFile + " with one byte changed", "invalid signature",
			[]string{"verify-blob", "--key", res.Pub, "--insecure-ignore-tlog", "--bundle", filepath.Join(release, ChecksumsSig), badSums}},
	} {
		out, err := cosign.Run(ctx, c.args...)
		if err == nil {
			return nil, fmt.Errorf("cosign %s passed on %s:\n%s", strings.Join(c.args, " "), c.what, out)
		}
		if !strings.Contains(out, c.why) {
			return nil, fmt.Errorf("cosign %s failed on %s, but not with %q:\n%s", strings.Join(c.args, " "), c.what, c.why, out)
		}
		say("refused, as it must be: %s: %q", c.what, c.why)
	}

	// helm pull from the registry gives back the chart that was pushed.
	pulled, err := PullChart(res.Chart, filepath.Join(cfg.Work, "pulled"))
	if err != nil {
		return nil, err
	}
	ch, err := loader.Load(pulled)
	if err != nil {
		return nil, err
	}
	if ch.Metadata.Version != res.Chart.Version || len(ch.Templates) == 0 {
		return nil, fmt.Errorf("helm pull gave chart %s %s with %d templates", ch.Name(), ch.Metadata.Version, len(ch.Templates))
	}
	say("helm pull %s --version %s: chart %s with %d templates", res.Chart.URL(), res.Chart.Version, ch.Name(), len(ch.Templates))

	// The admission policy (components/image-policy, Helm imagePolicy), with the run's key in
	// place of the keyless identity and the loopback registry in place of ghcr.io: sigstore
	// policy-controller's own verification (policy-tester) admits the signed image and
	// nothing else, in both renderings.
	pubPEM, err := os.ReadFile(res.Pub)
	if err != nil {
		return nil, err
	}
	for _, from := range []render.Kind{render.Kustomize, render.Helm} {
		policy := filepath.Join(cfg.Work, "image-policy-"+string(from)+".yaml")
		if err := WriteKeyPolicy(cfg.Root, from, pubPEM, repo, policy); err != nil {
			return nil, err
		}
		if err := CheckPolicy(ctx, cfg.PolicyTester, policy, res.Image.String()); err != nil {
			return nil, fmt.Errorf("the %s image policy refused the signed image: %w", from, err)
		}
		var refused []string
		for what, image := range map[string]name.Digest{"tampered": td, "unsigned": res.Unsigned, "signed by another key": otherSigned} {
			if err := CheckPolicy(ctx, cfg.PolicyTester, policy, image.String()); err == nil {
				return nil, fmt.Errorf("the %s image policy admitted the %s image %s", from, what, image)
			}
			refused = append(refused, what)
		}
		sort.Strings(refused)
		say("image policy (%s rendering, policy-tester): admits the signed image, refuses the %s ones", from, strings.Join(refused, ", "))
	}

	// The image the cluster pulls is the signed one again: the tag goes back to it.
	if _, err := Push(ctx, img, repo+":dev"); err != nil {
		return nil, err
	}
	ok = true
	return res, nil
}

// runReadme runs one localized README command: cosign as itself, `helm pull` through the Helm
// SDK, sha256sum in the release directory.
func runReadme(ctx context.Context, cosign Cosign, release string, chart Chart, cmd []string) (string, error) {
	switch cmd[0] {
	case "cosign":
		return cosign.RunIn(ctx, release, cmd[1:]...)
	case "sha256sum":
		return runTool(ctx, release, "sha256sum", nil, cmd[1:]...)
	case "helm":
		if len(cmd) < 3 || cmd[1] != "pull" || cmd[2] != chart.URL() {
			return "", fmt.Errorf("the check runs `helm pull %s ...` only", chart.URL())
		}
		path, err := PullChart(chart, filepath.Join(release, "helm"))
		return "pulled " + filepath.Base(path), err
	}
	return "", fmt.Errorf("the check cannot run %q: use cosign, helm pull or sha256sum in the README's block", cmd[0])
}

// makeRelease lays out what the release job attaches to a GitHub release, for one binary:
// the binary, its SPDX SBOM and SHA256SUMS over both (signed later).
func makeRelease(ctx context.Context, syft Syft, binary, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const name = "voting-linux-amd64"
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
		return err
	}
	if err := syft.SBOM(ctx, "file:"+filepath.Join(dir, name), filepath.Join(dir, name+".spdx.json")); err != nil {
		return err
	}
	if _, err := checkSBOM(filepath.Join(dir, name+".spdx.json"), data); err != nil {
		return fmt.Errorf("the release binary's SBOM: %w", err)
	}
	var sums strings.Builder
	for _, f := range []string{name, name + ".spdx.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), f)
	}
	return os.WriteFile(filepath.Join(dir, ChecksumsFile), []byte(sums.String()), 0o644)
}

// checkSBOM reads an SPDX JSON SBOM and checks that it names the main module and every module
// compiled into bin, the Go binary it describes (the build information Go writes into it), at
// the versions built.
func checkSBOM(path string, bin []byte) (string, error) {
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name        string `json:"name"`
			VersionInfo string `json:"versionInfo"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("SBOM %s: %w", path, err)
	}
	have := map[string]bool{}
	for _, p := range doc.Packages {
		have[p.Name+"@"+p.VersionInfo] = true
		have[p.Name] = true
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("the binary has no Go build information: %w", err)
	}
	if !have[info.Main.Path] {
		return "", fmt.Errorf("the SBOM (%d packages) does not name the main module %s", len(doc.Packages), info.Main.Path)
	}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		if !have[d.Path+"@"+d.Version] {
			return "", fmt.Errorf("the SBOM does not name %s %s, which the binary is built with", d.Path, d.Version)
		}
	}
	return fmt.Sprintf("%s, %d packages: %s and each of the %d modules built into the binary at its version (%s)",
		doc.SPDXVersion, len(doc.Packages), info.Main.Path, len(info.Deps), info.GoVersion), nil
}

// copySignature replays the signatures of from onto to, as an attacker who can push would:
// cosign's legacy signature and attestation images (tags sha256-<hex>.sig and .att) are copied
// to the tags they would have for to, and every artifact that refers to from (the bundle
// format keeps signatures and attestations as OCI referrers of the digest they sign) is pushed
// again with its subject changed to to. The signed content is untouched: a verifier must notice
// that what was signed is not what it is given. It returns how many it copied.
func copySignature(ctx context.Context, from, to name.Digest) (int, error) {
	copied := 0
	for _, suffix := range []string{".sig", ".att"} {
		src, err := name.NewTag(from.Context().String() + ":" + strings.Replace(from.DigestStr(), ":", "-", 1) + suffix)
		if err != nil {
			return 0, err
		}
		desc, err := remote.Get(src, remote.WithContext(ctx))
		if err != nil {
			continue // none of this kind
		}
		dst := to.Context().Tag(strings.Replace(to.DigestStr(), ":", "-", 1) + suffix)
		if err := remote.Put(dst, rawManifest{desc.Manifest, desc.MediaType}, remote.WithContext(ctx)); err != nil {
			return 0, fmt.Errorf("push the copied %s: %w", dst, err)
		}
		copied++
	}
	idx, err := remote.Referrers(from, remote.WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("the referrers of %s: %w", from, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return 0, err
	}
	toDesc, err := remote.Head(to, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	for _, d := range im.Manifests {
		desc, err := remote.Get(from.Context().Digest(d.Digest.String()), remote.WithContext(ctx))
		if err != nil {
			return 0, err
		}
		var m map[string]any
		if err := json.Unmarshal(desc.Manifest, &m); err != nil {
			return 0, err
		}
		m["subject"] = map[string]any{"mediaType": toDesc.MediaType, "digest": toDesc.Digest.String(), "size": toDesc.Size}
		raw, err := json.Marshal(m)
		if err != nil {
			return 0, err
		}
		h, _, err := v1.SHA256(bytes.NewReader(raw))
		if err != nil {
			return 0, err
		}
		if err := remote.Put(from.Context().Digest(h.String()), rawManifest{raw, desc.MediaType}, remote.WithContext(ctx)); err != nil {
			return 0, fmt.Errorf("push the copied referrer: %w", err)
		}
		copied++
	}
	return copied, nil
}

// rawManifest is a manifest pushed as it is.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mediaType, nil }

func flipFileByte(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	// A hex digit of the first checksum, swapped for another hex digit: still a well-formed
	// file, one byte different.
	if b[0] == '0' {
		b[0] = '1'
	} else {
		b[0] = '0'
	}
	return os.WriteFile(dst, b, 0o644)
}

func listDir(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// summary picks the line of a verification's output that says what was verified: cosign's
// "verified against" line, sha256sum's "OK" lines, else the first line that is no warning.
func summary(out string) string {
	var oks, other []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		switch {
		case strings.Contains(line, "verified against"), strings.HasSuffix(line, ": OK"):
			oks = append(oks, line)
		case line != "" && !strings.HasPrefix(line, "WARNING"):
			other = append(other, line)
		}
	}
	if len(oks) > 0 {
		return truncate(strings.Join(oks, "; "))
	}
	if len(other) > 0 {
		return truncate(other[0])
	}
	return ""
}

func truncate(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}
