package supplychain

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/registry"
)

// PushImage pushes the image of a `docker save` tarball to ref (what `docker push` or `crane
// push` does) and returns the reference by digest.
func PushImage(ctx context.Context, tarPath, ref string) (name.Digest, error) {
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		return name.Digest{}, fmt.Errorf("read the image tarball %s: %w", tarPath, err)
	}
	return Push(ctx, img, ref)
}

// Push pushes img to ref and returns the reference by digest.
func Push(ctx context.Context, img v1.Image, ref string) (name.Digest, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return name.Digest{}, err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return tag.Context().Digest(d.String()), nil
}

// Pull reads the image ref names from its registry.
func Pull(ctx context.Context, ref string) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	return remote.Image(r, remote.WithContext(ctx))
}

// RegistryClient is Helm's OCI client for the plain-HTTP loopback registry (`helm push
// --plain-http`), its output discarded.
func RegistryClient() (*registry.Client, error) {
	return registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptWriter(io.Discard))
}

// Chart is a chart pushed to an OCI registry.
type Chart struct {
	// Repo is the OCI repository without the scheme: 127.0.0.1:port/charts/voting.
	Repo string
	// Version is the chart's version, its tag in Repo.
	Version string
	// Digest is the pushed manifest's digest (sha256:...), what cosign signs.
	Digest string
}

// URL is the chart as `helm install` and `helm pull` take it: oci://host/charts/voting.
func (c Chart) URL() string { return "oci://" + c.Repo }

// Ref is the chart's manifest by digest, as cosign takes it.
func (c Chart) Ref() string { return c.Repo + "@" + c.Digest }

// PushChart packages the chart in dir (`helm package`), with version when not empty, into
// work and pushes it to oci://<registry>/charts (`helm push`).
func PushChart(dir, version, reg, work string) (Chart, error) {
	p := action.NewPackage()
	p.Destination, p.Version = work, version
	pkg, err := p.Run(dir, nil)
	if err != nil {
		return Chart{}, fmt.Errorf("helm package %s: %w", dir, err)
	}
	ch, err := loader.Load(pkg)
	if err != nil {
		return Chart{}, err
	}
	data, err := os.ReadFile(pkg)
	if err != nil {
		return Chart{}, err
	}
	rc, err := RegistryClient()
	if err != nil {
		return Chart{}, err
	}
	c := Chart{Repo: reg + "/charts/" + ch.Name(), Version: ch.Metadata.Version}
	res, err := rc.Push(data, c.Repo+":"+strings.ReplaceAll(c.Version, "+", "_"))
	if err != nil {
		return Chart{}, fmt.Errorf("helm push %s to oci://%s/charts: %w", filepath.Base(pkg), reg, err)
	}
	c.Digest = res.Manifest.Digest
	return c, nil
}

// PullChart is `helm pull oci://... --version v --plain-http` into dest; it returns the
// archive's path.
func PullChart(c Chart, dest string) (string, error) {
	rc, err := RegistryClient()
	if err != nil {
		return "", err
	}
	cfg := &action.Configuration{RegistryClient: rc}
	p := action.NewPullWithOpts(action.WithConfig(cfg))
	p.Settings = cli.New()
	p.Version, p.DestDir, p.PlainHTTP = c.Version, dest, true
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return "", err
	}
	if _, err := p.Run(c.URL()); err != nil {
		return "", fmt.Errorf("helm pull %s --version %s: %w", c.URL(), c.Version, err)
	}
	return filepath.Join(dest, filepath.Base(c.Repo)+"-"+c.Version+".tgz"), nil
}

// LocateChart is what `helm install NAME oci://... --version v --plain-http` does before
// installing: it pulls the chart into Helm's cache (cache, rather than $HOME's) and returns
// the archive's path. inst is the install action that will install it.
func LocateChart(inst *action.Install, c Chart, cache string) (string, error) {
	rc, err := RegistryClient()
	if err != nil {
		return "", err
	}
	inst.SetRegistryClient(rc)
	inst.Version, inst.PlainHTTP = c.Version, true
	settings := cli.New()
	settings.RepositoryCache = cache
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	path, err := inst.LocateChart(c.URL(), settings)
	if err != nil {
		return "", fmt.Errorf("helm install %s --version %s: %w", c.URL(), c.Version, err)
	}
	return path, nil
}
