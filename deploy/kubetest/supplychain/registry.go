// Package supplychain proves, offline, that what the project ships can be verified: a real
// OCI registry on loopback (the CNCF distribution registry), the image built from the
// Dockerfile and the Helm chart pushed to it, signed with cosign and a key pair made for the
// run, an SBOM made by syft and attached as a signed attestation, and then the verifications
// a user runs (the README's commands, with the test key in place of the keyless identity):
// they pass on what was signed and fail on a tampered image, an unsigned one and a chart
// signed by another key. cosign, syft and the registry are the programs users run, built from
// their Go modules (scripts/tool); the chart goes through the Helm SDK, what `helm push` and
// `helm pull` are made of.
//
// The cluster checks (package cluster) use the same registry: the node pulls the app image
// from it instead of importing a tarball, and the chart is installed from oci://.
package supplychain

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// WriteRegistryConfig writes the distribution registry's configuration for a plain-HTTP
// registry on addr (127.0.0.1:port: plain HTTP is what every client allows on loopback
// without a flag) with its blobs under dir, and returns the file's path. Deleting is on, so
// a test can also show what an overwritten tag does.
func WriteRegistryConfig(dir, addr string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
http:
  addr: %q
`, filepath.Join(dir, "data"), addr)
	path := filepath.Join(dir, "config.yml")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// RegistryEnv is the environment the registry runs with: no OpenTelemetry exporter, which
// would otherwise try to reach a collector that is not there.
var RegistryEnv = []string{"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"}

// Registry is a running distribution registry.
type Registry struct {
	// Addr is host:port, the registry part of image references.
	Addr string
	cmd  *exec.Cmd
	done chan error
}

// StartRegistry starts bin (the distribution registry, `registry serve`) on a free loopback
// port with its storage and log in dir, and returns once /v2/ answers.
func StartRegistry(ctx context.Context, bin, dir string) (*Registry, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	conf, err := WriteRegistryConfig(dir, addr)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", conf)
	cmd.Env = append(os.Environ(), RegistryEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the registry %s: %w", bin, err)
	}
	r := &Registry{Addr: addr, cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	if err := WaitRegistry(ctx, addr, r.done); err != nil {
		r.Stop()
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return r, nil
}

// WaitRegistry waits up to 30 s for the registry on addr to answer GET /v2/ with 200; exited,
// when not nil, reports the process ending first.
func WaitRegistry(ctx context.Context, addr string, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := "http://" + addr + "/v2/"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case e := <-exited:
			return fmt.Errorf("the registry exited before it answered on %s: %v", addr, e)
		case <-ctx.Done():
			return fmt.Errorf("the registry did not answer GET %s within 30 s: %v", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the registry and waits for it.
func (r *Registry) Stop() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// FreeAddr returns 127.0.0.1:port for a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}
