package supplychain

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Cosign runs the cosign binary the way a user would, with a home directory of its own (so
// that nothing of the machine's ~/.sigstore is read or written) and an empty password for the
// run's keys.
type Cosign struct {
	Bin  string
	Home string
}

// Run runs cosign with args and returns its combined output.
func (c Cosign) Run(ctx context.Context, args ...string) (string, error) {
	return c.RunIn(ctx, "", args...)
}

// RunIn is Run in the directory dir (relative paths in args are read there).
func (c Cosign) RunIn(ctx context.Context, dir string, args ...string) (string, error) {
	return runTool(ctx, dir, c.Bin, []string{"HOME=" + c.Home, "COSIGN_PASSWORD=", "COSIGN_YES=true"}, args...)
}

// KeyPair makes a cosign key pair in dir (`cosign generate-key-pair`) and returns the paths of
// the private and the public key.
func (c Cosign) KeyPair(ctx context.Context, dir string) (key, pub string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	prefix := filepath.Join(dir, "cosign")
	if _, err := c.Run(ctx, "generate-key-pair", "--output-key-prefix", prefix); err != nil {
		return "", "", err
	}
	return prefix + ".key", prefix + ".pub", nil
}

// Syft runs the syft binary with its update check off and plain HTTP allowed for the loopback
// registry.
type Syft struct {
	Bin  string
	Home string
}

// SBOM writes an SPDX JSON SBOM of source (`registry:ref`, `file:path`, ...) to out.
func (s Syft) SBOM(ctx context.Context, source, out string) error {
	_, err := runTool(ctx, "", s.Bin, []string{"HOME=" + s.Home, "SYFT_CHECK_FOR_APP_UPDATE=false",
		"SYFT_REGISTRY_INSECURE_USE_HTTP=true"}, "scan", source, "-q", "-o", "spdx-json="+out)
	return err
}

// runTool runs bin with args in dir (this process's when empty) and env added to this
// process's, and returns its combined output; a failure's error carries the command line and
// the output.
func runTool(ctx context.Context, dir, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
