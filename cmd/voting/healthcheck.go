package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

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
