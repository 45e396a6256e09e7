package supplychain

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestReadmeVerifyCommands: the README's verification block parses into the commands the
// check can run, and each becomes its offline form with nothing of the keyless identity or
// the placeholders left.
func TestReadmeVerifyCommands(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := VerifyCommands(readme)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range cmds {
		kinds = append(kinds, strings.Join(c[:2], " "))
		local, err := Localize(c, []string{PublishedChart, "127.0.0.1:5000/charts/voting", PublishedImage, "127.0.0.1:5000/votingapp/voting",
			"sha256:<digest>", "sha256:" + strings.Repeat("a", 64), "<version>", "0.1.0"}, []string{"--key", "cosign.pub", "--insecure-ignore-tlog"})
		if err != nil {
			t.Fatal(err)
		}
		line := strings.Join(local, " ")
		if strings.Contains(line, "ghcr.io") || strings.Contains(line, "certificate-") {
			t.Errorf("offline form still names the published place or identity: %s", line)
		}
		if c[0] == "cosign" {
			if !strings.Contains(line, "--key cosign.pub --insecure-ignore-tlog") {
				t.Errorf("cosign without the test key: %s", line)
			}
			if !strings.Contains(strings.Join(c, " "), "--certificate-oidc-issuer https://token.actions.githubusercontent.com") {
				t.Errorf("the README's %s does not name GitHub's issuer", line)
			}
		}
	}
	// The identity users are told to expect is the one the workflow signs as (and checks
	// itself after signing).
	ci, err := os.ReadFile("../../../.github/workflows/ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+SIGNER_IDENTITY: '([^']+)'$`).FindSubmatch(ci)
	if m == nil {
		t.Fatal("ci.yml has no SIGNER_IDENTITY: '...' in its env")
	}
	for _, c := range cmds {
		for i, w := range c {
			if w == "--certificate-identity-regexp" && c[i+1] != string(m[1]) {
				t.Errorf("README's identity %q, the workflow signs as %q", c[i+1], m[1])
			}
		}
	}
	want := []string{"cosign verify", "cosign verify-attestation", "cosign verify", "helm pull", "cosign verify-blob", "sha256sum --ignore-missing"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("README verification commands %q, want %q", kinds, want)
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		`cosign verify  a@b   # comment`:   {"cosign", "verify", "a@b"},
		`x --re '^a\.b (c|d)$' y`:          {"x", "--re", `^a\.b (c|d)$`, "y"},
		`x "a \"b\" c"`:                    {"x", `a "b" c`},
		`x --flag=value`:                   {"x", "--flag=value"},
		`x --identity-regexp='^a#b$' --io`: {"x", "--identity-regexp=^a#b$", "--io"},
	} {
		got, err := splitWords(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := splitWords(`x 'open`); err == nil {
		t.Error("an unclosed quote parsed")
	}
}

func TestLocalizeRefusesALeftPlaceholder(t *testing.T) {
	if _, err := Localize([]string{"cosign", "verify", "x@sha256:<digest>"}, []string{"<version>", "1"}, nil); err == nil {
		t.Error("a command with <digest> left passed")
	}
}

// TestFlipByte: the tampered image differs from the original in one byte of one file, and so
// in that layer's and the manifest's digests; the configuration is otherwise the same.
func TestFlipByte(t *testing.T) {
	content := bytes.Repeat([]byte("voting binary "), 100)
	layer := tarLayer(t, map[string][]byte{"etc/ssl/certs/ca.crt": []byte("certs"), "voting": content})
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t, map[string][]byte{"etc/passwd": []byte("root")}), layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = Relabel(img, "org.opencontainers.image.version", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := FlipByte(img, "/voting")
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := bad.Digest()
	if d1 == d2 {
		t.Fatal("same digest after the change")
	}
	got := fileIn(t, bad, "voting")
	diff := 0
	for i := range content {
		if got[i] != content[i] {
			diff++
		}
	}
	if diff != 1 || len(got) != len(content) {
		t.Errorf("%d bytes differ (length %d vs %d), want 1", diff, len(got), len(content))
	}
	if string(fileIn(t, bad, "etc/passwd")) != "root" {
		t.Error("the other layer changed")
	}
	cf, _ := bad.ConfigFile()
	if cf.Config.Labels["org.opencontainers.image.version"] != "1.2.3" || len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("config changed: labels %v, %d diff ids", cf.Config.Labels, len(cf.RootFS.DiffIDs))
	}
	if _, err := FlipByte(img, "/missing"); err == nil {
		t.Error("FlipByte of a missing file passed")
	}
}

func tarLayer(t *testing.T, files map[string][]byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func fileIn(t *testing.T, img v1.Image, name string) []byte {
	t.Helper()
	b, err := ReadFile(img, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
