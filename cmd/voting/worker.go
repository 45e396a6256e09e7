package main

import (
	"context"
	"errors"
	"flag"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/worker"
)

// workerFlags are the worker's own flags, parsed into its Config, and how the queue delivers
// to it (worker and all).
type workerFlags struct {
	cfg      worker.Config
	delivery deliveryFlags
	faults   fault.Flags
}

func (f *workerFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.cfg.BatchSize, "batch-size", 500, "most votes the worker records in one transaction")
	f.delivery.register(fs)
	f.faults = fault.Flags{}
	f.faults.Register(fs, worker.Faults...)
}

func (f *workerFlags) validate() error { return errors.Join(f.cfg.Validate(), f.delivery.validate()) }

// workerConfig is `voting worker`'s configuration.
type workerConfig struct {
	common
	worker   workerFlags
	redis    redisFlags
	postgres postgresFlags
}

func (c *workerConfig) register(fs *flag.FlagSet) {
	c.common.register(fs)
	c.worker.register(fs)
	c.redis.register(fs)
	c.postgres.register(fs)
}

func (c *workerConfig) resolve(*cmdEnv) error {
	return errors.Join(requireURL("worker", "redis-url", c.redis.url, "the Redis queue"),
		requireURL("worker", "postgres-url", c.postgres.url, "the PostgreSQL store"), c.worker.validate())
}

func runWorker(ctx context.Context, env *cmdEnv, args []string) error {
	var c workerConfig
	if err := parseConfig("worker", "Move votes from the Redis queue into PostgreSQL.", env, args, &c); err != nil {
		return err
	}
	p, err := newProcess(ctx, "worker", c.common, telemetry.Rollout{}, env)
	if err != nil {
		return err
	}
	p.log.Info("starting", "redis_url", maskURL(c.redis.url), "postgres_url", maskURL(c.postgres.url), "worker", c.worker.cfg,
		"claim_timeout", c.worker.delivery.claimTimeout, "max_deliveries", c.worker.delivery.maxDeliveries)
	q, err := openRedisQueue(ctx, p, c.redis, c.worker.delivery)
	if err != nil {
		return err
	}
	st, err := openPGStore(ctx, p, c.postgres.url)
	if err != nil {
		return err
	}
	if err := addWorker(p, c.common, c.worker, q.Consumer(consumerName()), q.Stats, st, worker.Faults); err != nil {
		return err
	}
	return p.run(ctx)
}

// addWorker adds the worker to p: its loop, and its consumer closed when p stops. stats is
// the queue's, for the backlog the worker reports to the store; faults are the worker's
// faults this process offers.
func addWorker(p *process, c common, f workerFlags, con voting.Consumer, stats func(context.Context) (voting.QueueStats, error), rec voting.Recorder, faults []fault.Def) error {
	if err := p.faults.Add(f.faults, faults...); err != nil {
		return err
	}
	cfg := f.cfg
	cfg.StopTimeout, cfg.OnDeadLetter, cfg.Tracer, cfg.Faults = c.shutdownTimeout, p.queueMetrics().DeadLettered, p.tracerFor("worker"), p.faults
	cfg.Instance = instance()
	cfg.Backlog = func(ctx context.Context) (int64, error) {
		s, err := stats(ctx)
		return s.Length, err
	}
	w, err := worker.New(cfg, con, rec, p.log, p.reg)
	if err != nil {
		return err
	}
	p.onClose("the queue consumer", func() { con.Close() })
	p.loop("the worker (its batch, and its read from the queue, up to 1 s)", w.Run)
	return nil
}
