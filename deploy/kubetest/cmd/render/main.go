// Command render writes every deployment target of the repository (kustomizations and Helm
// values files) as plain YAML, one file per target, with the same code the tests use:
//
//	go run ./cmd/render -root ../.. -out /tmp/manifests
//
// scripts/kube-apiserver-test applies its output to a real API server.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

func main() {
	root := flag.String("root", "../..", "the repository's top directory")
	out := flag.String("out", "", "directory to write <target>.yaml files into (created if missing)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "render: -out is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	targets, err := render.WriteAll(*root, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	for _, t := range targets {
		fmt.Println(t.Name)
	}
}
