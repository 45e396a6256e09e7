package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/votingapp/voting/internal/loadgen"
)

func runLoadgen(ctx context.Context, env *cmdEnv, args []string) error {
	var (
		cfg      loadgen.Config
		weights  string
		seed     bool
		asJSON   bool
		quiet    bool
		duration time.Duration
	)
	fs := newFlagSet("loadgen", env, "Cast votes against a vote service and report what it answered.\n--seed casts the original app's seed: 3000 form votes, 2000 for a and 1000 for b,\neach from a new voter.")
	fs.StringVar(&cfg.URL, "url", "http://localhost:8080", "the vote service")
	fs.IntVar(&cfg.Votes, "votes", 1000, "how many votes to cast")
	fs.IntVar(&cfg.Concurrency, "concurrency", 50, "requests in flight at once")
	fs.StringVar(&weights, "weights", "a=1,b=1", "options and their shares, as id=weight,...")
	fs.Float64Var(&cfg.Reuse, "reuse", 0, "share of votes cast by a returning voter (0 to 1)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "votes per second (0: as fast as possible)")
	fs.BoolVar(&cfg.JSON, "api", false, "POST JSON to /api/vote instead of the form to /")
	fs.BoolVar(&seed, "seed", false, "cast the original's seed votes (overrides --votes, --weights, --reuse)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "print no progress")
	fs.DurationVar(&duration, "max-duration", 10*time.Minute, "stop after this long whatever is left")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if seed {
		cfg.Votes, weights, cfg.Reuse = 3000, "a=2,b=1", 0
	}
	ws, err := loadgen.ParseWeights(weights)
	if err != nil {
		return err
	}
	cfg.Weights = ws
	if cfg.Reuse < 0 || cfg.Reuse > 1 {
		return fmt.Errorf("--reuse %v: want 0 to 1", cfg.Reuse)
	}
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var progress func(int)
	if !quiet && !asJSON {
		step := max(cfg.Votes/20, 1)
		progress = func(done int) {
			if done%step == 0 || done == cfg.Votes {
				fmt.Fprintf(env.stderr, "\r%d/%d votes", done, cfg.Votes)
			}
		}
	}
	rep, err := loadgen.Run(ctx, cfg, progress)
	if progress != nil {
		fmt.Fprintln(env.stderr)
	}
	if rep == nil {
		return err
	}
	if asJSON {
		if jerr := json.NewEncoder(env.stdout).Encode(rep); jerr != nil {
			return jerr
		}
	} else {
		fmt.Fprintf(env.stdout, "%d votes sent in %s: %d accepted (%.0f/s), %d failed\n", rep.Sent, rep.Duration.Round(time.Millisecond), rep.Accepted, rep.Rate, rep.Failed)
		fmt.Fprintf(env.stdout, "accepted by option: %v; answers: %v\n", rep.AcceptedByOption, rep.ByStatus)
		fmt.Fprintf(env.stdout, "latency p50 %s, p95 %s, p99 %s, max %s\n", rep.P50, rep.P95, rep.P99, rep.Max)
		if rep.FirstError != "" {
			fmt.Fprintf(env.stdout, "first error: %s\n", rep.FirstError)
		}
	}
	if err != nil {
		return err
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d votes failed", rep.Failed, rep.Sent)
	}
	return nil
}
