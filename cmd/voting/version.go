package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/votingapp/voting/internal/buildinfo"
)

func runVersion(_ context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet("version", env, "Print the version, the commit and the Go version.")
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "voting %s (commit %s, %s %s/%s)\n", buildinfo.Version(), buildinfo.Commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
