// Package doctor checks each hop of a running deployment from where it runs (vote, Redis,
// the workers' consumer group, PostgreSQL, result) and explains each broken one in a
// sentence: what failed, the likely cause, and the fix. It only reads: it casts no vote,
// creates no stream, group or table, and acknowledges nothing. It knows the services only
// from the outside (their URLs, their Redis keys and their tables), never their code.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Cause names why a hop is broken, in --json and for tests; the sentence says it to people.
type Cause string

// The causes. The network ones come from Classify.
const (
	CauseDNS         Cause = "dns"         // the host name does not resolve
	CauseRefused     Cause = "refused"     // nothing listens on the port
	CauseTimeout     Cause = "timeout"     // connecting timed out: packets dropped
	CauseUnreachable Cause = "unreachable" // no route to the address
	CauseNoAnswer    Cause = "no_answer"   // connected, then no answer in time
	CauseClosed      Cause = "closed"      // connected, then closed without an answer
	CauseTLS         Cause = "tls"         // TLS handshake or certificate
	CauseAuth        Cause = "auth"        // wrong password or user
	CauseNoPerm      Cause = "no_permission"
	CauseNoDatabase  Cause = "no_database"  // PostgreSQL database (or schema) missing
	CauseNotMigrated Cause = "not_migrated" // tables missing or older than this version
	CauseNoStream    Cause = "no_stream"    // the Redis stream is missing or not a stream
	CauseNoConsumer  Cause = "no_consumer"  // no worker in the group, or none seen lately
	CauseBacklog     Cause = "backlog_growing"
	CauseStuck       Cause = "backlog_stuck"
	CauseDeadLetters Cause = "dead_letters"
	CauseNotReady    Cause = "not_ready"     // the service answers, its /readyz does not
	CauseNoTally     Cause = "no_tally"      // result has not read the tally yet
	CauseWrongServer Cause = "wrong_service" // something else answers at that URL
	CauseOther       Cause = "error"
)

// Status is a hop's outcome.
type Status string

// The statuses.
const (
	OK      Status = "ok"
	Broken  Status = "broken"
	Skipped Status = "skipped" // not checked: no URL given, or the hop before it is down
)

// The hops, in pipeline order.
const (
	HopVote     = "vote"
	HopRedis    = "redis"
	HopWorker   = "worker"
	HopPostgres = "postgres"
	HopResult   = "result"
)

// Hop is the outcome of one hop.
type Hop struct {
	Name   string `json:"hop"`
	Status Status `json:"status"`
	// Target is what was checked, without secrets: a URL, or host:port and more.
	Target string `json:"target,omitempty"`
	// Cause is set when the hop is broken.
	Cause Cause `json:"cause,omitempty"`
	// Message is, for a broken hop, the sentence: what failed, the likely cause, the fix;
	// for a healthy one what was seen; for a skipped one why.
	Message string `json:"message"`
}

// Report is the outcome of every hop, in pipeline order.
type Report struct {
	// OK is true when every hop checked is healthy (and at least one was checked).
	OK bool `json:"ok"`
	// FirstBroken names the first broken hop in pipeline order, "" when none is.
	FirstBroken string `json:"first_broken,omitempty"`
	Hops        []Hop  `json:"hops"`
}

// Config says what to check. An empty URL leaves its hop unchecked.
type Config struct {
	// VoteURL and ResultURL are the public URLs of the two web services (for voting all,
	// its two ports).
	VoteURL, ResultURL string
	// VoteAdminURL, WorkerAdminURL and ResultAdminURL are the services' admin listeners, whose
	// /readyz is read when given (voting all has one for everything).
	VoteAdminURL, WorkerAdminURL, ResultAdminURL string
	// RedisURL is the queue's Redis; Stream, Group and DeadLetterStream its keys.
	RedisURL, Stream, Group, DeadLetterStream string
	// PostgresURL is the store; SchemaVersion the newest migration this build knows.
	PostgresURL   string
	SchemaVersion int
	// Timeout bounds each step of a hop (connecting, one request), so that doctor never hangs.
	Timeout time.Duration
	// Sample is how long the queue is watched to tell a backlog that grows with nothing
	// consumed; 0 skips that check.
	Sample time.Duration
	// ClaimTimeout is the workers' --claim-timeout: a consumer not seen for that long is
	// gone (the queue hands its votes to others after it).
	ClaimTimeout time.Duration
}

// Validate reports every setting that cannot work, all at once, without quoting a secret.
func (c Config) Validate() error {
	var errs []error
	for _, u := range []struct{ flag, val string }{
		{"--vote-url", c.VoteURL}, {"--result-url", c.ResultURL},
		{"--vote-admin-url", c.VoteAdminURL}, {"--worker-admin-url", c.WorkerAdminURL}, {"--result-admin-url", c.ResultAdminURL},
	} {
		if u.val == "" {
			continue
		}
		if pu, err := url.Parse(u.val); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q is not an http:// or https:// URL", u.flag, u.val))
		}
	}
	if c.RedisURL != "" {
		errs = append(errs, validRedisURL(c.RedisURL))
		if c.Stream == "" || c.Group == "" || c.DeadLetterStream == "" {
			errs = append(errs, errors.New("--stream must not be empty"))
		}
	}
	if c.PostgresURL != "" {
		errs = append(errs, validPostgresURL(c.PostgresURL))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v must be positive", c.Timeout))
	}
	if c.Sample < 0 {
		errs = append(errs, fmt.Errorf("--sample %v must not be negative (0: do not watch the backlog)", c.Sample))
	}
	if c.ClaimTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--claim-timeout %v must be positive", c.ClaimTimeout))
	}
	if c.VoteURL == "" && c.ResultURL == "" && c.RedisURL == "" && c.PostgresURL == "" &&
		c.VoteAdminURL == "" && c.WorkerAdminURL == "" && c.ResultAdminURL == "" {
		errs = append(errs, errors.New("nothing to check: give --vote-url, --result-url, --redis-url or --postgres-url"))
	}
	return errors.Join(errs...)
}

// problem is a broken hop's cause and sentence.
type problem struct {
	cause Cause
	msg   string
}

// Run checks every hop the config names and returns the report. The hops run at once,
// except the worker's, which needs Redis; each is bounded by the timeouts.
func Run(ctx context.Context, cfg Config) *Report {
	hops := map[string]*Hop{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	set := func(h Hop) {
		mu.Lock()
		hops[h.Name] = &h
		mu.Unlock()
	}
	wg.Go(func() { set(checkVote(ctx, cfg)) })
	wg.Go(func() {
		redisHop, worker := checkRedisAndWorker(ctx, cfg)
		set(redisHop)
		set(worker)
	})
	wg.Go(func() { set(checkPostgres(ctx, cfg)) })
	wg.Go(func() { set(checkResult(ctx, cfg)) })
	wg.Wait()

	r := &Report{}
	checked := 0
	for _, name := range []string{HopVote, HopRedis, HopWorker, HopPostgres, HopResult} {
		h := hops[name]
		r.Hops = append(r.Hops, *h)
		if h.Status != Skipped {
			checked++
		}
		if h.Status == Broken && r.FirstBroken == "" {
			r.FirstBroken = name
		}
	}
	r.OK = r.FirstBroken == "" && checked > 0
	return r
}

// WriteText writes one line per hop in pipeline order (ok, or the sentence), then the verdict.
func (r *Report) WriteText(w io.Writer) {
	var b strings.Builder
	var broken, checked, skipped []string
	for _, h := range r.Hops {
		status := string(h.Status)
		switch h.Status {
		case Broken:
			status = "BROKEN"
			broken = append(broken, h.Name)
			checked = append(checked, h.Name)
		case OK:
			checked = append(checked, h.Name)
		case Skipped:
			skipped = append(skipped, h.Name)
		}
		fmt.Fprintf(&b, "%-8s  %-7s  %s\n", h.Name, status, h.Message)
	}
	notChecked := ""
	if len(skipped) > 0 {
		notChecked = "; not checked: " + strings.Join(skipped, ", ")
	}
	switch {
	case len(checked) == 0:
		b.WriteString("nothing was checked\n")
	case len(broken) == 0:
		fmt.Fprintf(&b, "healthy: every hop checked is ok (%s%s)\n", strings.Join(checked, ", "), notChecked)
	default:
		fmt.Fprintf(&b, "broken: start with %s, the first broken hop in the pipeline (%d of %d checked hops broken: %s%s)\n",
			r.FirstBroken, len(broken), len(checked), strings.Join(broken, ", "), notChecked)
	}
	io.WriteString(w, b.String())
}

func okHop(name, target, msg string) Hop {
	return Hop{Name: name, Status: OK, Target: target, Message: msg}
}

func brokenHop(name, target string, p *problem) Hop {
	return Hop{Name: name, Status: Broken, Target: target, Cause: p.cause, Message: sentence(p.msg)}
}

func skippedHop(name, why string) Hop { return Hop{Name: name, Status: Skipped, Message: why} }

// sentence ends msg with a full stop.
func sentence(msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" || strings.HasSuffix(msg, ".") || strings.HasSuffix(msg, "?") {
		return msg
	}
	return msg + "."
}

// ago writes a duration for people: whole seconds above 10 s, tenths below.
func ago(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// count writes n and the word, plural unless n is 1.
func count(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
