package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

const repoRoot = "../.."

func mustReadDockerfile(t *testing.T) []byte {
	t.Helper()
	dt, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

// offlineResolver answers BuildKit's base-image lookups without a registry: every base image
// is a one-layer image for exactly the platform asked, so only the Dockerfile itself is judged.
// Whether the images exist is the e2e run's business.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	p := platforms.DefaultSpec()
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		p = *opt.ImageOpt.Platform
	}
	img := ocispecs.Image{
		Platform: p,
		Config:   ocispecs.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		RootFS:   ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString(ref)}},
	}
	dt, err := json.Marshal(img)
	return ref, "", dt, err
}

// convertOpt is what the Dockerfile frontend gets from a client, for one target platform (none:
// the build machine's) on an amd64 build machine.
func convertOpt(t *testing.T, dt []byte, target string) dockerfile2llb.ConvertOpt {
	t.Helper()
	src := llb.Local("dockerfile")
	def, err := src.Marshal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sm := llb.NewSourceMap(&src, "Dockerfile", "Dockerfile", dt)
	sm.Definition = def
	opt := dockerfile2llb.ConvertOpt{
		Config: dockerui.Config{
			BuildPlatforms: []ocispecs.Platform{platforms.MustParse("linux/amd64")},
		},
		MetaResolver: offlineResolver{},
		SourceMap:    sm,
	}
	if target != "" {
		p := platforms.MustParse(target)
		opt.TargetPlatform = &p
	}
	return opt
}

// TestDockerfileChecks runs BuildKit's build checks, the same rules as `docker build --check`
// (and `docker buildx build --check`), and wants no finding at all.
func TestDockerfileChecks(t *testing.T) {
	dt := mustReadDockerfile(t)
	for _, target := range []string{"", "linux/amd64", "linux/arm64"} {
		res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, convertOpt(t, dt, target))
		if err != nil {
			t.Fatalf("lint for %q: %v", target, err)
		}
		if res.Error != nil {
			t.Errorf("lint for %q: build error %s", target, res.Error.Message)
		}
		for _, w := range res.Warnings {
			line := 0
			if w.Location != nil && len(w.Location.Ranges) > 0 {
				line = int(w.Location.Ranges[0].Start.Line)
			}
			t.Errorf("lint for %q: Dockerfile:%d: %s: %s (%s)", target, line, w.RuleName, w.Detail, w.URL)
		}
	}
}

// The linter also runs inside instructions.Parse; a warning there fails too, and the parse
// gives the stages for the structural checks below.
func mustStages(t *testing.T) []instructions.Stage {
	t.Helper()
	dt := mustReadDockerfile(t)
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, w := range ast.Warnings {
		t.Errorf("parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, url, msg string, loc []parser.Range) {
		t.Errorf("lint: %s: %s (%s) at %v", rule, msg, url, loc)
	}})
	stages, _, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		t.Fatalf("instructions: %v", err)
	}
	return stages
}

func TestDockerfileStructure(t *testing.T) {
	stages := mustStages(t)
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, runtime)", len(stages))
	}
	build, final := stages[0], stages[1]

	// No "# syntax=" line: it would make BuildKit pull a frontend image.
	dt := mustReadDockerfile(t)
	if regexp.MustCompile(`(?mi)^#\s*syntax\s*=`).Match(dt) {
		t.Errorf("Dockerfile has a # syntax= line")
	}

	// The builder: pinned to go.mod's Go version, on the build platform.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatalf("no go directive in go.mod")
	}
	if want := "golang:" + string(m[1]) + "-bookworm"; build.BaseName != want {
		t.Errorf("build stage FROM %q, want %q (the Go version of go.mod)", build.BaseName, want)
	}
	if build.Platform != "$BUILDPLATFORM" {
		t.Errorf("build stage platform %q, want $BUILDPLATFORM (cross-compile, no emulation)", build.Platform)
	}

	// Modules are downloaded before the source is copied, with a cache mount.
	var order []string
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			order = append(order, "COPY "+strings.Join(c.SourcePaths, " "))
		case *instructions.RunCommand:
			order = append(order, "RUN "+strings.Join(c.CmdLine, " "))
			// Mount options are read when the step is expanded; nothing here needs a variable.
			if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
				t.Fatal(err)
			}
			mounts := instructions.GetMounts(c)
			if len(mounts) == 0 || mounts[0].Type != instructions.MountTypeCache || mounts[0].Target != "/go/pkg/mod" {
				t.Errorf("RUN %q has no module cache mount", c.CmdLine)
			}
		}
	}
	idx := func(prefix string) int {
		return slices.IndexFunc(order, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
	mods, download, src, gobuild := idx("COPY go.mod go.sum"), idx("RUN go mod download"), idx("COPY cmd"), idx("RUN CGO_ENABLED=0")
	if mods < 0 || download < 0 || src < 0 || gobuild < 0 || !(mods < download && download < src && src < gobuild) {
		t.Errorf("build steps %q: want COPY go.mod go.sum, RUN go mod download, COPY cmd, RUN CGO_ENABLED=0 go build, in that order", order)
	}
	if gobuild >= 0 {
		cmd := order[gobuild]
		for _, want := range []string{"GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-trimpath", "-s -w", "-tags nosqlite",
			"github.com/votingapp/voting/internal/buildinfo.version=$VERSION",
			"github.com/votingapp/voting/internal/buildinfo.commit=$COMMIT", "./cmd/voting"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("go build step lacks %q: %s", want, cmd)
			}
		}
	}

	if final.BaseName != "scratch" {
		t.Errorf("runtime FROM %q, want scratch: the binary and CA certificates alone", final.BaseName)
	}
	var copies []string
	for _, c := range final.Commands {
		if c, ok := c.(*instructions.CopyCommand); ok {
			if c.From != "build" {
				t.Errorf("runtime stage copies %v from %q, want only from the build stage", c.SourcePaths, c.From)
			}
			copies = append(copies, strings.Join(c.SourcePaths, " ")+" -> "+c.DestPath)
		}
		if _, ok := c.(*instructions.RunCommand); ok {
			t.Errorf("runtime stage has a RUN: scratch has no shell")
		}
	}
	if want := []string{"/etc/ssl/certs/ca-certificates.crt -> /etc/ssl/certs/ca-certificates.crt", "/out/voting -> /voting"}; !slices.Equal(copies, want) {
		t.Errorf("runtime copies %v, want %v", copies, want)
	}
}

// TestImageConfig converts the Dockerfile to a build graph, as a build for arm64 from an amd64
// machine would, and checks the image config that the build would produce.
func TestImageConfig(t *testing.T) {
	dt := mustReadDockerfile(t)
	opt := convertOpt(t, dt, "linux/arm64")
	opt.BuildArgs = map[string]string{"VERSION": "v1.2.3", "COMMIT": "abc123", "CREATED": "2026-01-02T03:04:05Z"}
	res, err := dockerfile2llb.Dockerfile2LLB(context.Background(), dt, opt)
	if err != nil {
		t.Fatalf("convert: %v", err)
	}
	img := res.Image
	if img.Architecture != "arm64" || img.OS != "linux" {
		t.Errorf("image platform %s/%s, want linux/arm64", img.OS, img.Architecture)
	}
	c := img.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/voting"}) {
		t.Errorf("entrypoint %v, want [/voting]", c.Entrypoint)
	}
	if !slices.Equal(c.Cmd, []string{"help"}) {
		t.Errorf("cmd %v, want [help]: each deployment names the service", c.Cmd)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if want := []string{"8080/tcp", "8081/tcp", "9090/tcp"}; !slices.Equal(ports, want) {
		t.Errorf("exposed %v, want %v", ports, want)
	}
	if hc := c.Healthcheck; hc == nil || !slices.Equal(hc.Test, probe) {
		t.Errorf("healthcheck %+v, want %v", hc, probe)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.created":  "2026-01-02T03:04:05Z",
		"org.opencontainers.image.source":   "https://github.com/votingapp/voting",
		"org.opencontainers.image.title":    "voting",
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	// The build step cross-compiles: the graph must run on amd64 with GOARCH=arm64.
	def, err := res.State.Marshal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sawCross bool
	for _, d := range def.Def {
		if bytes.Contains(d, []byte("GOARCH=$TARGETARCH")) || bytes.Contains(d, []byte("TARGETARCH=arm64")) {
			sawCross = true
		}
	}
	if !sawCross {
		t.Errorf("no build step with TARGETARCH=arm64 in the graph")
	}
}

// TestDockerignore checks that the build context holds the module and its source, and leaves
// out what the build must not see (VCS data, deployment files, local binaries and data, .env).
func TestDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	for path, wantSent := range map[string]bool{
		"go.mod":                        true,
		"go.sum":                        true,
		"Dockerfile":                    false,
		"cmd/voting/main.go":            true,
		"internal/vote/assets/vote.css": true,
		".git/HEAD":                     false,
		".env":                          false,
		"deploy/compose/.env":           false,
		"deploy/compose/compose.yaml":   false,
		"bin/voting":                    false,
		"data/voting.db":                false,
		"voting":                        false,
		"README.md":                     false,
		"internal/vote/vote.test":       false,
	} {
		excluded, err := pm.MatchesOrParentMatches(path)
		if err != nil {
			t.Fatal(err)
		}
		if excluded == wantSent {
			t.Errorf("%s: sent to the build = %v, want %v", path, !excluded, wantSent)
		}
	}
}
