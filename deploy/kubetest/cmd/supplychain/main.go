// Command supplychain is the offline supply-chain check (make e2e-supplychain runs it through
// scripts/e2e-supplychain): a registry on loopback, the app image and the Helm chart pushed,
// signed with a key made for the run, an SBOM attested; the README's verification commands
// pass on them and fail on a tampered image, an unsigned image and a chart signed by another
// key; the admission policy admits only the signed image. Package supplychain has the details.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/votingapp/voting/deploy/kubetest/supplychain"
)

func main() {
	var cfg supplychain.Config
	flag.StringVar(&cfg.Root, "root", "../..", "the repository's top directory")
	flag.StringVar(&cfg.Work, "work", "", "work directory (default: a new temporary one, removed afterwards)")
	flag.StringVar(&cfg.Cosign, "cosign", "", "the cosign binary (scripts/tool cosign)")
	flag.StringVar(&cfg.Syft, "syft", "", "the syft binary (scripts/tool syft)")
	flag.StringVar(&cfg.Registry, "registry", "", "the distribution registry binary (scripts/tool registry)")
	flag.StringVar(&cfg.PolicyTester, "policy-tester", "", "sigstore policy-controller's policy-tester (scripts/tool policy-tester)")
	flag.StringVar(&cfg.ImageTar, "image", "", "the app image as a docker save tarball")
	flag.StringVar(&cfg.Binary, "voting", "", "the voting binary, standing for a release binary")
	flag.Parse()
	cfg.Out = os.Stdout
	for n, v := range map[string]string{"-cosign": cfg.Cosign, "-syft": cfg.Syft, "-registry": cfg.Registry, "-policy-tester": cfg.PolicyTester, "-image": cfg.ImageTar, "-voting": cfg.Binary} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "supplychain: %s is required\n", n)
			os.Exit(2)
		}
	}
	if cfg.Work == "" {
		dir, err := os.MkdirTemp("", "supplychain")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(dir)
		cfg.Work = dir
	}
	for _, p := range []*string{&cfg.Root, &cfg.Work, &cfg.Cosign, &cfg.Syft, &cfg.Registry, &cfg.PolicyTester, &cfg.ImageTar, &cfg.Binary} {
		if a, err := filepath.Abs(*p); err == nil {
			*p = a
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := supplychain.Run(ctx, cfg)
	if err != nil {
		fmt.Printf("FAIL supplychain: %v\n", err)
		os.Exit(1)
	}
	res.Registry.Stop()
	fmt.Printf("ok supplychain in %.0fs\n", time.Since(start).Seconds())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "supplychain:", err)
	os.Exit(1)
}
