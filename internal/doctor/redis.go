package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisTarget is a Redis URL without its secrets, as doctor shows it.
func RedisTarget(rawURL string) string {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return "(an unparsable Redis URL)"
	}
	scheme := "redis"
	if opt.TLSConfig != nil {
		scheme = "rediss"
	}
	return fmt.Sprintf("%s://%s/%d", scheme, opt.Addr, opt.DB)
}

// checkRedisAndWorker checks that Redis answers and holds the stream, then the workers'
// side of the queue: their consumer group, that one of them was seen lately, that the
// backlog does not grow with nothing consumed, and that no vote was dead-lettered.
func checkRedisAndWorker(ctx context.Context, cfg Config) (redisHop, workerHop Hop) {
	if cfg.RedisURL == "" {
		return skippedHop(HopRedis, "not checked: no --redis-url (voting all on its in-process queue has none)"),
			checkWorkerAdmin(ctx, cfg, "not checked: no --redis-url or --worker-admin-url")
	}
	target := RedisTarget(cfg.RedisURL)
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		// Config.Validate refuses it first; this keeps the secret out if it was skipped.
		return brokenHop(HopRedis, target, &problem{CauseOther, "--redis-url is not a Redis URL"}), skippedHop(HopWorker, "not checked: Redis could not be reached")
	}
	tr := newTrace(cfg.Timeout)
	opt.Dialer = tr.dial
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout
	// One try: a retry would only double the time to the same answer, and what doctor
	// reports is what the first try met.
	opt.MaxRetries, opt.DialerRetries, opt.PoolSize = -1, 1, 2
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	s := service{what: "Redis", addr: opt.Addr, flag: "--redis-url"}
	call := func(f func(ctx context.Context) error) *problem {
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		if err := f(cctx); err != nil {
			return redisProblem(tr, s, err)
		}
		return nil
	}
	notChecked := skippedHop(HopWorker, "not checked: Redis could not be read (the redis line)")

	if p := call(func(ctx context.Context) error { return rdb.Ping(ctx).Err() }); p != nil {
		return brokenHop(HopRedis, target, p), notChecked
	}
	version := "?"
	_ = call(func(ctx context.Context) error {
		info, err := rdb.InfoMap(ctx, "server").Result()
		if v := info["Server"]["redis_version"]; err == nil && v != "" {
			version = v
		}
		return nil // a Redis whose ACL forbids INFO is still a working queue
	})
	var typ string
	var length int64
	p := call(func(ctx context.Context) error {
		var err error
		if typ, err = rdb.Type(ctx, cfg.Stream).Result(); err != nil || typ != "stream" {
			return err
		}
		length, err = rdb.XLen(ctx, cfg.Stream).Result()
		return err
	})
	switch {
	case p != nil:
		return brokenHop(HopRedis, target, p), notChecked
	case typ == "none":
		return brokenHop(HopRedis, target, &problem{CauseNoStream, fmt.Sprintf("Redis %s answers but holds no stream %q in database %d: neither the vote service nor a worker has connected to it with this URL and --stream (each creates the stream when it starts), or Redis lost its data in a restart; compare --redis-url (its database number too) and --stream with the services', or start them",
				target, cfg.Stream, opt.DB)}),
			skippedHop(HopWorker, "not checked: no stream (the redis line)")
	case typ != "stream":
		return brokenHop(HopRedis, target, &problem{CauseNoStream, fmt.Sprintf("the key %q in Redis %s is a %s, not a stream: something else writes it (the original app's vote service pushes votes to a list of that name); point that writer elsewhere, or give this app another --stream",
				cfg.Stream, target, typ)}),
			skippedHop(HopWorker, "not checked: no stream (the redis line)")
	}
	redisHop = okHop(HopRedis, target, fmt.Sprintf("%s answers (Redis %s); stream %q holds %s not yet recorded", target, version, cfg.Stream, count(length, "vote")))
	return redisHop, checkWorker(ctx, cfg, rdb, opt, call)
}

// checkWorkerAdmin is the worker hop without Redis: the worker's /readyz, if given.
func checkWorkerAdmin(ctx context.Context, cfg Config, skipped string) Hop {
	if cfg.WorkerAdminURL == "" {
		return skippedHop(HopWorker, skipped)
	}
	if p := readyz(ctx, cfg, "the worker", cfg.WorkerAdminURL, "--worker-admin-url"); p != nil {
		return brokenHop(HopWorker, cfg.WorkerAdminURL, p)
	}
	return okHop(HopWorker, cfg.WorkerAdminURL, cfg.WorkerAdminURL+"/readyz: ready")
}

// queueState is what the queue looks like at one moment.
type queueState struct {
	length        int64  // votes not yet recorded (the workers delete what they record)
	pending       int64  // of which delivered to a worker and not yet acknowledged
	lastDelivered string // the newest entry the group has handed out
}

func checkWorker(ctx context.Context, cfg Config, rdb *redis.Client, opt *redis.Options, call func(func(context.Context) error) *problem) Hop {
	target := fmt.Sprintf("group %s of stream %s", cfg.Group, cfg.Stream)
	// state reads the queue and the group's consumers at one moment.
	state := func() (queueState, []redis.XInfoConsumer, bool, *problem) {
		var st queueState
		var consumers []redis.XInfoConsumer
		found := false
		p := call(func(ctx context.Context) error {
			var length *redis.IntCmd
			var groups *redis.XInfoGroupsCmd
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				length = p.XLen(ctx, cfg.Stream)
				groups = p.XInfoGroups(ctx, cfg.Stream)
				return nil
			})
			if err != nil {
				return err
			}
			st.length = length.Val()
			for _, g := range groups.Val() {
				if g.Name == cfg.Group {
					found, st.pending, st.lastDelivered = true, g.Pending, g.LastDeliveredID
				}
			}
			if !found {
				return nil
			}
			consumers, err = rdb.XInfoConsumers(ctx, cfg.Stream, cfg.Group).Result()
			return err
		})
		return st, consumers, found, p
	}

	first, consumers, found, p := state()
	if p != nil {
		return brokenHop(HopWorker, target, p)
	}
	if !found {
		return brokenHop(HopWorker, target, &problem{CauseNoConsumer, fmt.Sprintf("stream %q has no consumer group %q, so no worker reads it (%s waiting): the vote service and the worker create the group when they start, so it was deleted, or Redis lost it in a restart; restart a worker with the same --redis-url and --stream, and it creates the group and reads the votes",
			cfg.Stream, cfg.Group, count(first.length, "vote"))})
	}
	last := first
	if cfg.Sample > 0 {
		select {
		case <-ctx.Done():
			return brokenHop(HopWorker, target, &problem{CauseOther, "doctor was stopped while it watched the queue"})
		case <-time.After(cfg.Sample):
		}
		if last, consumers, found, p = state(); p != nil {
			return brokenHop(HopWorker, target, p)
		}
		if !found {
			return brokenHop(HopWorker, target, &problem{CauseNoConsumer, fmt.Sprintf("the consumer group %q of stream %q went away while doctor watched it: someone deleted it, or Redis restarted without its data; restart the workers", cfg.Group, cfg.Stream)})
		}
	}
	// Votes no worker has taken yet (the workers delete what they record, so the stream
	// holds the pending ones and these). A live worker takes a new vote within moments.
	undelivered := max(0, last.length-last.pending)

	// Redis lists a consumer from the first time it is handed a vote (before 7.2, a read that
	// finds nothing neither adds it nor counts as seeing it), so an idle pipeline with a live
	// worker can show no consumer, or one not seen for long. Only votes left untaken prove
	// that no worker reads.
	if len(consumers) == 0 && undelivered > 0 {
		return brokenHop(HopWorker, target, &problem{CauseNoConsumer, fmt.Sprintf("no consumer in group %q of stream %q (%s waiting): no worker has ever read this stream; start a worker with the same --redis-url and --stream (voting worker), or, if one runs, read its log: it cannot reach this Redis, or reads another --stream or database",
			cfg.Group, cfg.Stream, count(undelivered, "vote"))})
	}
	var seen time.Duration
	for i, c := range consumers {
		if i == 0 || c.Idle < seen {
			seen = c.Idle
		}
	}
	// A consumer's idle time is how long ago Redis last handed it something or heard from it.
	// A live worker takes a waiting vote within moments, and one stuck on a batch still
	// refreshes what it holds every claim timeout / 4; silent for a whole claim timeout while
	// votes wait (at both looks, when doctor watched), it is one the queue itself gives up on
	// (its votes go to others): gone.
	waiting := undelivered > 0 && (cfg.Sample == 0 || first.length-first.pending > 0)
	if len(consumers) > 0 && waiting && seen > cfg.ClaimTimeout {
		return brokenHop(HopWorker, target, &problem{CauseNoConsumer, fmt.Sprintf("no worker seen for %s: %s of group %q was last seen by Redis %s ago, longer than --claim-timeout %s, with %s waiting untaken: the workers are down, or cannot reach Redis; start them (in Kubernetes: kubectl get deploy worker, and its events), or read their logs",
			ago(seen), consumersOf(len(consumers)), cfg.Group, ago(seen), cfg.ClaimTimeout, count(undelivered, "vote"))})
	}
	if p := workerReadyz(ctx, cfg); p != nil {
		return brokenHop(HopWorker, target, p)
	}

	sampled := ""
	if cfg.Sample > 0 {
		// Something was consumed when the group handed out a newer entry, or fewer are
		// pending, or fewer wait (the workers delete what they record).
		consumed := last.lastDelivered != first.lastDelivered || last.pending < first.pending || last.length < first.length
		stuckWhy := fmt.Sprintf("a worker was seen by Redis %s ago, so the workers are registered but take nothing: they stopped a moment ago, or they are stuck on a batch they cannot record (a worker that cannot write to PostgreSQL retries its batch and reads nothing new; see the postgres line); read the workers' /readyz and logs",
			ago(seen))
		switch {
		case !consumed && last.length > first.length:
			return brokenHop(HopWorker, target, &problem{CauseBacklog, fmt.Sprintf("the backlog is growing: stream %q grew from %d to %d votes in %s and no worker took any; %s",
				cfg.Stream, first.length, last.length, ago(cfg.Sample), stuckWhy)})
		case !consumed && last.length > 0:
			return brokenHop(HopWorker, target, &problem{CauseStuck, fmt.Sprintf("the backlog is not draining: %s waiting in stream %q (%d of them held by a worker) and no worker took or recorded any in %s; %s",
				count(last.length, "vote"), cfg.Stream, last.pending, ago(cfg.Sample), stuckWhy)})
		}
		sampled = fmt.Sprintf(" (%d %s before)", first.length, ago(cfg.Sample))
	}

	var dead int64
	if p := call(func(ctx context.Context) error {
		var err error
		dead, err = rdb.XLen(ctx, cfg.DeadLetterStream).Result()
		return err
	}); p != nil {
		return brokenHop(HopWorker, target, p)
	}
	if dead > 0 {
		return brokenHop(HopWorker, target, &problem{CauseDeadLetters, fmt.Sprintf("%s in %s: votes the workers could not record, which are not counted; read them with `%s` (each has its reason), fix the cause, then replay them as docs/operations.md says under VotingVotesDeadLettered",
			count(dead, "dead letter"), cfg.DeadLetterStream, redisCLI(opt, cfg.DeadLetterStream))})
	}
	if len(consumers) == 0 {
		return okHop(HopWorker, target, fmt.Sprintf("group %q: no worker has taken a vote yet, and none waits (Redis lists a worker from its first vote; --worker-admin-url checks one that runs); no dead letters", cfg.Group))
	}
	return okHop(HopWorker, target, fmt.Sprintf("group %q: %s, one seen by Redis %s ago; %s waiting%s; no dead letters",
		cfg.Group, count(int64(len(consumers)), "consumer"), ago(seen), count(last.length, "vote"), sampled))
}

// workerReadyz reads the worker's /readyz when its admin URL is given.
func workerReadyz(ctx context.Context, cfg Config) *problem {
	if cfg.WorkerAdminURL == "" {
		return nil
	}
	return readyz(ctx, cfg, "the worker", cfg.WorkerAdminURL, "--worker-admin-url")
}

// consumersOf names the group's consumers for a sentence about when they were last seen.
func consumersOf(n int) string {
	if n == 1 {
		return "the only consumer"
	}
	return fmt.Sprintf("the newest of the %d consumers", n)
}

// redisProblem explains a failed Redis command: the network, or Redis's own error.
func redisProblem(tr *trace, s service, err error) *problem {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		if p := tr.netProblem(s, err); p != nil {
			return p
		}
		return &problem{CauseOther, fmt.Sprintf("Redis at %s failed: %v; check %s", s.addr, err, s.flag)}
	}
	msg := rerr.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "ERR invalid password"):
		return &problem{CauseAuth, fmt.Sprintf("Redis at %s refused the password of %s (authentication failed: %s): the password (or the ACL user) in the URL is wrong; use the one Redis is configured with (requirepass, or the ACL user's), the same as the vote service's and the worker's",
			s.addr, s.flag, msg)}
	case strings.HasPrefix(msg, "NOAUTH"):
		return &problem{CauseAuth, fmt.Sprintf("Redis at %s wants a password and %s has none (authentication failed: NOAUTH): put it in the URL, redis://:PASSWORD@host:6379/0 (or redis://USER:PASSWORD@... for an ACL user)",
			s.addr, s.flag)}
	case strings.HasPrefix(msg, "ERR AUTH"), strings.HasPrefix(msg, "ERR Client sent AUTH"):
		return &problem{CauseAuth, fmt.Sprintf("%s has a password but Redis at %s has none set (authentication failed: %s): take the password out of the URL, or give Redis the password the services expect",
			s.flag, s.addr, msg)}
	case strings.HasPrefix(msg, "NOPERM"):
		return &problem{CauseNoPerm, fmt.Sprintf("the Redis user of %s may not run what doctor reads (%s): doctor needs PING, INFO, TYPE, XLEN and XINFO on the stream; allow them (ACL SETUSER <user> +@read +ping +info), or run doctor with the worker's URL",
			s.flag, msg)}
	case strings.HasPrefix(msg, "LOADING"):
		return &problem{CauseNotReady, fmt.Sprintf("Redis at %s is loading its data into memory after a restart (LOADING): it answers once loaded; run doctor again in a moment", s.addr)}
	case strings.Contains(msg, "DB index is out of range"):
		return &problem{CauseNoDatabase, fmt.Sprintf("the database number in %s does not exist on Redis at %s (%s): use the services' URL, whose database is usually /0", s.flag, s.addr, msg)}
	}
	return &problem{CauseOther, fmt.Sprintf("Redis at %s answered an error: %s; compare %s with the services'", s.addr, msg, s.flag)}
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_:./@-]+$`)

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// redisCLI is the redis-cli command that reads the first dead letters, for the Redis of opt.
// It never holds the password: --askpass asks for it.
func redisCLI(opt *redis.Options, key string) string {
	host, port := opt.Addr, "6379"
	if i := strings.LastIndex(opt.Addr, ":"); i >= 0 {
		host, port = strings.Trim(opt.Addr[:i], "[]"), opt.Addr[i+1:]
	}
	args := []string{"redis-cli", "-h", shellWord(host), "-p", port}
	if opt.DB != 0 {
		args = append(args, "-n", strconv.Itoa(opt.DB))
	}
	if opt.TLSConfig != nil {
		args = append(args, "--tls")
	}
	if opt.Username != "" && opt.Username != "default" {
		args = append(args, "--user", shellWord(opt.Username))
	}
	if opt.Password != "" {
		args = append(args, "--askpass")
	}
	args = append(args, "XRANGE", shellWord(key), "-", "+", "COUNT", "10")
	return strings.Join(args, " ")
}

// validRedisURL reports what makes a Redis URL unusable, without quoting it (it may hold a
// password).
func validRedisURL(raw string) error {
	if _, err := redis.ParseURL(raw); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("--redis-url is not a Redis URL (redis://[:password@]host:port/db): %w", err)
	}
	return nil
}
