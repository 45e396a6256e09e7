package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/votingapp/voting/internal/pgstore"
	"github.com/votingapp/voting/internal/redisqueue"
)

// redisFlags are the Redis queue's flags (vote, worker, all).
type redisFlags struct {
	url    string
	stream string
}

func (f *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "redis-url", "", "Redis URL of the vote queue, e.g. redis://redis:6379/0")
	fs.StringVar(&f.stream, "stream", "votes", "Redis stream of the votes; dead letters go to <stream>:dead")
}

// postgresFlags are the PostgreSQL store's flag (worker, result, all, migrate).
type postgresFlags struct{ url string }

func (f *postgresFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "postgres-url", "", "PostgreSQL URL of the vote store, e.g. postgres://user:pass@postgres:5432/votes?sslmode=disable")
}

// deliveryFlags say how the queue hands votes to consumers (worker, all): the Redis queue's
// and the in-process queue's config alike.
type deliveryFlags struct {
	claimTimeout  time.Duration
	maxDeliveries int
}

func (f *deliveryFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.claimTimeout, "claim-timeout", 30*time.Second, "how long a vote taken by a worker that died stays with it before another worker takes it")
	fs.IntVar(&f.maxDeliveries, "max-deliveries", 5, "deliveries of one vote before it goes to the dead letters")
}

func (f *deliveryFlags) validate() error {
	if f.maxDeliveries < 0 {
		return fmt.Errorf("--max-deliveries %d must not be negative (0: the default, 5)", f.maxDeliveries)
	}
	return nil
}

// openRedisQueue connects to the Redis queue as a part of p: its backlog in p's metrics, its
// ping in p's readiness, closed when p stops.
func openRedisQueue(ctx context.Context, p *process, r redisFlags, d deliveryFlags) (*redisqueue.Queue, error) {
	q, err := redisqueue.New(ctx, redisqueue.Config{
		URL: r.url, Stream: r.stream, ClaimTimeout: d.claimTimeout, MaxDeliveries: d.maxDeliveries,
		Logger: p.log, OnDeadLetter: p.queueMetrics().DeadLettered,
	})
	if err != nil {
		return nil, err
	}
	p.queueMetrics().Observe(q.Stats)
	p.onClose("the Redis queue", func() { q.Close() })
	p.check("redis", q.Ping)
	return q, nil
}

// openPGStore connects to the PostgreSQL store as a part of p: its ping in p's readiness,
// closed when p stops.
func openPGStore(ctx context.Context, p *process, url string) (*pgstore.Store, error) {
	st, err := pgstore.New(ctx, url)
	if err != nil {
		return nil, err
	}
	p.onClose("the PostgreSQL store", st.Close)
	p.check("postgres", st.Ping)
	return st, nil
}
