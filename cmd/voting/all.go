package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/pgstore"
	"github.com/votingapp/voting/internal/result"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/worker"
)

// allConfig is `voting all`'s configuration: every service's flags, each once, and the
// embedded store's directory.
type allConfig struct {
	common
	page     pageFlags
	vote     voteFlags
	result   resultFlags
	worker   workerFlags
	redis    redisFlags
	postgres postgresFlags
	dataDir  string
}

func (c *allConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	c.page.register(fs)
	c.vote.register(fs)
	c.result.register(fs)
	c.worker.register(fs)
	c.redis.register(fs)
	c.postgres.register(fs)
	fs.StringVar(&c.dataDir, "data-dir", "data", "directory of the embedded SQLite store (used when --postgres-url is empty)")
}

func (c *allConfig) resolve(env *cmdEnv) error {
	opts, proxies, pageErr := c.page.resolve(env)
	c.vote.cfg.Options, c.vote.cfg.Proxies = opts, proxies
	c.result.cfg.Options, c.result.cfg.ClientAddr = opts, proxies.ClientIP
	c.vote.cfg.VersionLabel, c.vote.cfg.AccentColor = c.page.versionLabel, c.page.accentColor
	c.result.cfg.VersionLabel, c.result.cfg.AccentColor = c.page.versionLabel, c.page.accentColor
	// vote and result check the same version label and accent colour: a problem with one is
	// reported once.
	var exitErr error
	if _, ok := c.worker.faults[worker.FaultExitAfter]; ok && c.redis.url == "" {
		exitErr = errExitInProcess
	}
	return joinUnique(pageErr, c.vote.cfg.Validate(), c.result.cfg.Validate(), c.worker.validate(), exitErr)
}

// errExitInProcess refuses worker-exit-after where it would lose votes: the in-process queue
// lives in the process that the fault ends, with the votes it holds.
var errExitInProcess = errors.New("--fault-worker-exit-after needs a queue that outlives the process (--redis-url, or the split worker): the in-process queue would lose the votes it holds")

// runAll runs the three services in one process. Each backend is the server whose URL is
// given, or else the embedded one: SQLite in --data-dir, and the in-process queue.
func runAll(ctx context.Context, env *cmdEnv, args []string) error {
	var c allConfig
	if err := parseConfig("all", "Run vote, worker and result in one process. Without server URLs it needs nothing\ninstalled: votes are kept in SQLite in --data-dir, the queue is in-process.", env, args, &c); err != nil {
		return err
	}
	p, err := newProcess(ctx, "all", c.common, c.page.rollout(), env)
	if err != nil {
		return err
	}

	// The queue: Redis, or the in-process queue, which is drained into the store on
	// shutdown once the vote server has stopped taking votes.
	var pub voting.Publisher
	var consumer voting.Consumer
	var stats func(context.Context) (voting.QueueStats, error)
	if c.redis.url != "" {
		q, err := openRedisQueue(ctx, p, c.redis, c.worker.delivery)
		if err != nil {
			return err
		}
		pub, consumer, stats = q, q.Consumer(consumerName()), q.Stats
	} else {
		q := memqueue.New(memqueue.Config{ClaimTimeout: c.worker.delivery.claimTimeout, MaxDeliveries: c.worker.delivery.maxDeliveries,
			Logger: p.log, OnDeadLetter: p.queueMetrics().DeadLettered})
		p.queueMetrics().Observe(q.Stats)
		p.drain = func(ctx context.Context) error {
			q.Close()
			return q.Drain(ctx)
		}
		pub, consumer, stats = q, q.Consumer("all"), q.Stats
	}

	// The store: PostgreSQL, migrated here since nothing else runs `voting migrate` in
	// this mode, or SQLite.
	var st interface {
		voting.Recorder
		result.Store
	}
	if c.postgres.url != "" {
		if err := pgstore.Migrate(ctx, c.postgres.url); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		pg, err := openPGStore(ctx, p, c.postgres.url)
		if err != nil {
			return err
		}
		st = pg
	} else {
		lite, err := openEmbeddedStore(ctx, c.dataDir)
		if err != nil {
			return err
		}
		p.onClose("the SQLite store", func() { lite.Close() })
		p.check("sqlite", lite.Ping)
		st = lite
	}
	p.log.Info("starting",
		"queue", backendName(c.redis.url, "redis "+maskURL(c.redis.url), "in-process"),
		"store", backendName(c.postgres.url, "postgres "+maskURL(c.postgres.url), "sqlite in "+c.dataDir),
		"vote", c.vote.cfg, "result", c.result.cfg, "worker", c.worker.cfg)

	if err := addVote(p, c.vote, c.dataDir, pub); err != nil {
		return err
	}
	workerFaults := worker.Faults
	if c.redis.url == "" { // see errExitInProcess: the fault is not offered at run time either
		workerFaults = slices.DeleteFunc(slices.Clone(worker.Faults), func(d fault.Def) bool { return d.Name == worker.FaultExitAfter })
	}
	if err := addWorker(p, c.common, c.worker, consumer, stats, st, workerFaults); err != nil {
		return err
	}
	if err := addResult(p, c.result, st); err != nil {
		return err
	}
	return p.run(ctx)
}

// embeddedStore is the store of the embedded default (embedded.go), which a build with
// -tags nosqlite leaves out (embedded_nosqlite.go).
type embeddedStore interface {
	voting.Recorder
	result.Store
	Ping(context.Context) error
	Close() error
}

func backendName(url, server, embedded string) string {
	if url != "" {
		return server
	}
	return embedded
}
