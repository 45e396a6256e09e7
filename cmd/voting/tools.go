package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/votingapp/voting/internal/buildinfo"
	"github.com/votingapp/voting/internal/pgstore"
)

func runMigrate(ctx context.Context, env *cmdEnv, args []string) error {
	var s settings
	fs := newFlagSet("migrate", env, "Apply the embedded database migrations and exit. Idempotent, and safe to run\nfrom several processes at once (they take turns under an advisory lock).")
	s.registerPostgres(fs)
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	if err := requireURL("migrate", "postgres-url", s.postgresURL, "the PostgreSQL store"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := pgstore.Migrate(ctx, s.postgresURL); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "migrations applied")
	return nil
}

func runHealthcheck(ctx context.Context, env *cmdEnv, args []string) error {
	var timeout time.Duration
	fs := newFlagSet("healthcheck", env, "GET the URL (e.g. http://127.0.0.1:9090/readyz) and exit 0 on a 2xx answer, 1 otherwise.\nFor container health checks in images that have no curl.\n\nUsage: voting healthcheck [--timeout=3s] URL")
	fs.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	if err := parse(fs, args, env, 1); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", fs.Arg(0), resp.Status)
	}
	return nil
}

func runVersion(_ context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet("version", env, "Print the version, the commit and the Go version.")
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "voting %s (commit %s, %s %s/%s)\n", buildinfo.Version(), buildinfo.Commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
