package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/votingapp/voting/internal/doctor"
	"github.com/votingapp/voting/internal/pgstore"
	"github.com/votingapp/voting/internal/redisqueue"
)

// errBroken is doctor's verdict when a hop is broken (exit 1); the report has said why.
var errBroken = errors.New("a hop is broken")

// runDoctor checks each hop of a deployment from here. The datastores are named with the
// services' own flags (--redis-url, --stream, --postgres-url, --claim-timeout), so that a
// service's settings, pasted or in its environment, point doctor at what it uses.
func runDoctor(ctx context.Context, env *cmdEnv, args []string) error {
	var (
		cfg      doctor.Config
		redis    redisFlags
		postgres postgresFlags
		asJSON   bool
	)
	fs := newFlagSet("doctor", env, "Check each hop of a deployment from where doctor runs, in pipeline order: the vote service,\n"+
		"Redis, the workers (their consumer group, the backlog, dead letters), PostgreSQL (reached,\n"+
		"migrated) and the result service. Prints one line per hop, ok or a sentence saying what\n"+
		"failed, the likely cause and the fix, then the first broken hop. Exit 0 when every hop\n"+
		"checked is healthy, 1 when one is broken, 2 on a usage error. For voting all on its\n"+
		"embedded store, the vote and result URLs are all there is to check.")
	fs.StringVar(&cfg.VoteURL, "vote-url", "http://localhost:8080", "the vote service's public URL (empty: not checked)")
	fs.StringVar(&cfg.ResultURL, "result-url", "http://localhost:8081", "the result service's public URL (empty: not checked)")
	fs.StringVar(&cfg.VoteAdminURL, "vote-admin-url", "", "the vote service's admin listener, e.g. http://localhost:9090, whose /readyz is read too")
	fs.StringVar(&cfg.WorkerAdminURL, "worker-admin-url", "", "a worker's admin listener, whose /readyz is read too")
	fs.StringVar(&cfg.ResultAdminURL, "result-admin-url", "", "the result service's admin listener, whose /readyz is read too")
	redis.register(fs)
	postgres.register(fs)
	fs.DurationVar(&cfg.ClaimTimeout, "claim-timeout", redisqueue.DefaultClaimTimeout, "the workers' --claim-timeout: a worker not seen by Redis for longer is gone")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "bound on each step of a hop (connecting, one request or query)")
	fs.DurationVar(&cfg.Sample, "sample", 2*time.Second, "how long to watch the queue for a backlog that grows while nothing is consumed (0: do not watch)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	cfg.RedisURL, cfg.Stream, cfg.PostgresURL = redis.url, redis.stream, postgres.url
	cfg.Group, cfg.DeadLetterStream = redisqueue.DefaultGroup, redis.stream+":dead"
	if err := cfg.Validate(); err != nil {
		return usageError(env, "doctor", err)
	}
	version, err := pgstore.LatestMigration()
	if err != nil {
		return err
	}
	cfg.SchemaVersion = version
	// go-redis logs its failed dials itself; the report says it once, in a sentence.
	quietRedis(slog.New(slog.DiscardHandler))

	report := doctor.Run(ctx, cfg)
	if asJSON {
		if err := json.NewEncoder(env.stdout).Encode(report); err != nil {
			return err
		}
	} else {
		report.WriteText(env.stdout)
	}
	if !report.OK {
		return fmt.Errorf("%w: %s", errBroken, report.FirstBroken)
	}
	return nil
}
