package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/pgstore"
	"github.com/votingapp/voting/internal/ratelimit"
	"github.com/votingapp/voting/internal/redisqueue"
	"github.com/votingapp/voting/internal/result"
	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/worker"
)

// settings are all the flags of the services; each subcommand registers the ones it uses.
type settings struct {
	common
	options      *optionsFlag
	poll         voting.Options // options resolved by parseSettings, for the services that show them
	voteAddr     string
	resultAddr   string
	redisURL     string
	stream       string
	postgresURL  string
	dataDir      string
	batchSize    int
	claimTimeout time.Duration
	maxDeliver   int
	pollInterval time.Duration
	// Per-client vote limit (off by default) and the proxies whose X-Forwarded-For it trusts.
	rateLimit      float64
	rateBurst      int
	trustedProxies string
	voterKeyFile   string
	// WebSocket clients result serves at once, in all and from one client address.
	maxWebsockets, maxWebsocketsPerClient int
}

func (s *settings) registerVote(fs *flag.FlagSet) {
	s.registerOptions(fs)
	fs.StringVar(&s.voteAddr, "vote-addr", ":8080", "address of the voting page")
	fs.Float64Var(&s.rateLimit, "rate-limit", 0, "votes per second allowed from one client address after --rate-burst at once; 0: no limit (set it for public demos)")
	fs.IntVar(&s.rateBurst, "rate-burst", 10, "votes one client address may cast at once before --rate-limit applies")
	s.registerProxies(fs)
	fs.StringVar(&s.voterKeyFile, "voter-key-file", "", "file of the keys that sign voter ids, one a line: the first signs, each verifies (add the new key second, then move it first, to rotate); every vote replica needs the same file. Required by vote; all keeps a generated one in --data-dir when unset")
}

func (s *settings) registerResult(fs *flag.FlagSet) {
	s.registerOptions(fs)
	fs.StringVar(&s.resultAddr, "result-addr", ":8081", "address of the results page")
	fs.DurationVar(&s.pollInterval, "poll-interval", 5*time.Second, "how often result reads the tally when the store signalled no change (a safety net: changes are pushed within milliseconds)")
	// 10,000 is the benchmarked target (docs/performance.md: 79 MB RSS, inside the 128 MiB
	// limit of the deployments); 1,000 from one address leaves room for a big NAT, and
	// takes ten addresses to fill a process.
	fs.IntVar(&s.maxWebsockets, "max-websockets", 10000, "most WebSocket clients result serves at once; more are answered 503 (0: no limit)")
	fs.IntVar(&s.maxWebsocketsPerClient, "max-websockets-per-client", 1000, "most WebSocket clients result serves at once from one client address (IPv4 address or IPv6 /64; behind a proxy, list it in --trusted-proxies); more are answered 503 (0: no limit)")
	s.registerProxies(fs)
}

// registerProxies registers --trusted-proxies once: vote's rate limit and result's
// WebSocket limit per client both tell clients apart by it.
func (s *settings) registerProxies(fs *flag.FlagSet) {
	if fs.Lookup("trusted-proxies") == nil {
		fs.StringVar(&s.trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of proxies whose X-Forwarded-For names the client, for --rate-limit and --max-websockets-per-client")
	}
}

// registerOptions registers --options once, for the services that show the options.
func (s *settings) registerOptions(fs *flag.FlagSet) {
	if s.options == nil {
		s.options = registerOptions(fs)
	}
}

func (s *settings) registerRedis(fs *flag.FlagSet) {
	fs.StringVar(&s.redisURL, "redis-url", "", "Redis URL of the vote queue, e.g. redis://redis:6379/0")
	fs.StringVar(&s.stream, "stream", "votes", "Redis stream of the votes; dead letters go to <stream>:dead")
}

func (s *settings) registerPostgres(fs *flag.FlagSet) {
	fs.StringVar(&s.postgresURL, "postgres-url", "", "PostgreSQL URL of the vote store, e.g. postgres://user:pass@postgres:5432/votes?sslmode=disable")
}

func (s *settings) registerWorker(fs *flag.FlagSet) {
	fs.IntVar(&s.batchSize, "batch-size", 500, "most votes the worker records in one transaction")
	fs.DurationVar(&s.claimTimeout, "claim-timeout", 30*time.Second, "how long a vote taken by a worker that died stays with it before another worker takes it")
	fs.IntVar(&s.maxDeliver, "max-deliveries", 5, "deliveries of one vote before it goes to the dead letters")
}

// parseSettings parses a service's flags and resolves the options.
func parseSettings(name, summary string, env *cmdEnv, args []string, register ...func(*settings, *flag.FlagSet)) (*settings, error) {
	s := &settings{}
	fs := newFlagSet(name, env, summary)
	s.common.register(fs)
	for _, r := range register {
		r(s, fs)
	}
	if err := parse(fs, args, env, 0); err != nil {
		return nil, err
	}
	if s.batchSize < 0 || s.maxDeliver < 0 {
		return nil, fmt.Errorf("--batch-size and --max-deliveries must not be negative (0 means the default)")
	}
	if s.maxWebsockets < 0 || s.maxWebsocketsPerClient < 0 {
		return nil, fmt.Errorf("--max-websockets and --max-websockets-per-client must not be negative (0 means no limit)")
	}
	if _, err := ratelimit.ParseProxies(s.trustedProxies); err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if s.options == nil {
		return s, nil
	}
	var err error
	if s.poll, err = s.options.resolve(env); err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	return s, nil
}

func runVote(ctx context.Context, env *cmdEnv, args []string) error {
	s, err := parseSettings("vote", "Serve the voting page; votes go to the Redis queue.", env, args,
		(*settings).registerVote, (*settings).registerRedis)
	if err != nil {
		return err
	}
	if err := requireURL("vote", "redis-url", s.redisURL, "the Redis queue"); err != nil {
		return err
	}
	if s.voterKeyFile == "" {
		return errNoVoterKey
	}
	p, err := newProcess(ctx, "vote", s.common, env)
	if err != nil {
		return err
	}
	p.log.Info("starting", "redis_url", maskURL(s.redisURL), "options", s.poll.String())
	q, err := s.redisQueue(ctx, p)
	if err != nil {
		return err
	}
	if err := s.addVote(p, q); err != nil {
		return err
	}
	return p.run(ctx)
}

func runWorker(ctx context.Context, env *cmdEnv, args []string) error {
	s, err := parseSettings("worker", "Move votes from the Redis queue into PostgreSQL.", env, args,
		(*settings).registerRedis, (*settings).registerPostgres, (*settings).registerWorker)
	if err != nil {
		return err
	}
	if err := requireURL("worker", "redis-url", s.redisURL, "the Redis queue"); err != nil {
		return err
	}
	if err := requireURL("worker", "postgres-url", s.postgresURL, "the PostgreSQL store"); err != nil {
		return err
	}
	p, err := newProcess(ctx, "worker", s.common, env)
	if err != nil {
		return err
	}
	p.log.Info("starting", "redis_url", maskURL(s.redisURL), "postgres_url", maskURL(s.postgresURL), "batch_size", s.batchSize)
	q, err := s.redisQueue(ctx, p)
	if err != nil {
		return err
	}
	st, err := s.pgStore(ctx, p)
	if err != nil {
		return err
	}
	s.addWorker(p, q.Consumer(consumerName()), st)
	return p.run(ctx)
}

func runResult(ctx context.Context, env *cmdEnv, args []string) error {
	s, err := parseSettings("result", "Serve the live results page from PostgreSQL.", env, args,
		(*settings).registerResult, (*settings).registerPostgres)
	if err != nil {
		return err
	}
	if err := requireURL("result", "postgres-url", s.postgresURL, "the PostgreSQL store"); err != nil {
		return err
	}
	p, err := newProcess(ctx, "result", s.common, env)
	if err != nil {
		return err
	}
	p.log.Info("starting", "postgres_url", maskURL(s.postgresURL), "options", s.poll.String())
	st, err := s.pgStore(ctx, p)
	if err != nil {
		return err
	}
	if err := s.addResult(p, st); err != nil {
		return err
	}
	return p.run(ctx)
}

// runAll runs the three services in one process. Each backend is the server whose URL is
// given, or else the embedded one: SQLite in --data-dir, and the in-process queue.
func runAll(ctx context.Context, env *cmdEnv, args []string) error {
	s, err := parseSettings("all", "Run vote, worker and result in one process. Without server URLs it needs nothing\ninstalled: votes are kept in SQLite in --data-dir, the queue is in-process.", env, args,
		(*settings).registerVote, (*settings).registerResult, (*settings).registerRedis, (*settings).registerPostgres,
		(*settings).registerWorker, func(s *settings, fs *flag.FlagSet) {
			fs.StringVar(&s.dataDir, "data-dir", "data", "directory of the embedded SQLite store (used when --postgres-url is empty)")
		})
	if err != nil {
		return err
	}
	p, err := newProcess(ctx, "all", s.common, env)
	if err != nil {
		return err
	}

	// The queue: Redis, or the in-process queue, which is drained into the store on
	// shutdown once the vote server has stopped taking votes.
	var pub voting.Publisher
	var consumer voting.Consumer
	if s.redisURL != "" {
		q, err := s.redisQueue(ctx, p)
		if err != nil {
			return err
		}
		pub, consumer = q, q.Consumer(consumerName())
	} else {
		q := memqueue.New(memqueue.Config{ClaimTimeout: s.claimTimeout, MaxDeliveries: s.maxDeliver,
			Logger: p.log, OnDeadLetter: p.queueMetrics().DeadLettered})
		p.queueMetrics().Observe(q.Stats)
		p.drain = func(ctx context.Context) error {
			q.Close()
			return q.Drain(ctx)
		}
		pub, consumer = q, q.Consumer("all")
	}

	// The store: PostgreSQL, migrated here since nothing else runs `voting migrate` in
	// this mode, or SQLite.
	var st interface {
		voting.Recorder
		result.Store
	}
	if s.postgresURL != "" {
		if err := pgstore.Migrate(ctx, s.postgresURL); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		pg, err := s.pgStore(ctx, p)
		if err != nil {
			return err
		}
		st = pg
	} else {
		lite, err := openEmbeddedStore(ctx, s.dataDir)
		if err != nil {
			return err
		}
		p.onClose("the SQLite store", func() { lite.Close() })
		p.check("sqlite", lite.Ping)
		st = lite
	}
	p.log.Info("starting",
		"queue", backendName(s.redisURL, "redis "+maskURL(s.redisURL), "in-process"),
		"store", backendName(s.postgresURL, "postgres "+maskURL(s.postgresURL), "sqlite in "+s.dataDir),
		"options", s.poll.String())

	if err := s.addVote(p, pub); err != nil {
		return err
	}
	s.addWorker(p, consumer, st)
	if err := s.addResult(p, st); err != nil {
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

// redisQueue connects to the Redis queue as a part of p: its backlog in p's metrics, its
// ping in p's readiness, closed when p stops.
func (s *settings) redisQueue(ctx context.Context, p *process) (*redisqueue.Queue, error) {
	q, err := redisqueue.New(ctx, redisqueue.Config{
		URL: s.redisURL, Stream: s.stream, ClaimTimeout: s.claimTimeout, MaxDeliveries: s.maxDeliver,
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

// pgStore connects to the PostgreSQL store as a part of p: its ping in p's readiness,
// closed when p stops.
func (s *settings) pgStore(ctx context.Context, p *process) (*pgstore.Store, error) {
	st, err := pgstore.New(ctx, s.postgresURL)
	if err != nil {
		return nil, err
	}
	p.onClose("the PostgreSQL store", st.Close)
	p.check("postgres", st.Ping)
	return st, nil
}

func (s *settings) addVote(p *process, pub voting.Publisher) error {
	keys, err := s.voterKeys(p)
	if err != nil {
		return err
	}
	svc, err := vote.New(vote.Config{Options: s.poll, Instance: instance(), Tracer: p.tracerFor("vote"), VoterKeys: keys}, pub, p.log, p.reg)
	if err != nil {
		return err
	}
	h := svc.Handler()
	proxies, err := ratelimit.ParseProxies(s.trustedProxies)
	if err != nil {
		return err
	}
	if s.rateLimit > 0 {
		limited := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_votes_rate_limited_total",
			Help: "Votes refused with 429 by the per-client rate limit (--rate-limit).",
		})
		p.reg.MustRegister(limited)
		isVote := func(r *http.Request) bool { return r.Method == http.MethodPost }
		h = ratelimit.Middleware(ratelimit.New(s.rateLimit, s.rateBurst), proxies, isVote, limited.Inc, h)
	}
	return p.serve("vote", s.voteAddr, h)
}

func (s *settings) addWorker(p *process, c voting.Consumer, rec voting.Recorder) {
	w := worker.New(worker.Config{BatchSize: s.batchSize, StopTimeout: s.shutdownTimeout, OnDeadLetter: p.queueMetrics().DeadLettered,
		Tracer: p.tracerFor("worker")}, c, rec, p.log, p.reg)
	p.onClose("the queue consumer", func() { c.Close() })
	p.loop("the worker (its batch, and its read from the queue, up to 1 s)", w.Run)
}

func (s *settings) addResult(p *process, st result.Store) error {
	proxies, err := ratelimit.ParseProxies(s.trustedProxies)
	if err != nil {
		return err
	}
	svc, err := result.New(result.Config{Options: s.poll, PollInterval: s.pollInterval, Instance: instance(), Tracer: p.tracerFor("result"),
		MaxClients: s.maxWebsockets, MaxClientsPerAddr: s.maxWebsocketsPerClient, ClientAddr: proxies.ClientIP}, st, p.log, p.reg)
	if err != nil {
		return err
	}
	p.check("tally", svc.Ready)
	p.loop("the result service (closing its WebSockets)", svc.Run)
	return p.serve("result", s.resultAddr, svc.Handler())
}
