// Package vote is the voting web service: it serves the voting page, gives each browser a
// voter id, validates each choice against the configured options and publishes it to the
// queue. A 2xx answer means the vote is in the queue. It never reads or writes the store.
package vote

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/fault"
	"github.com/votingapp/voting/internal/ratelimit"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// Config is what the vote service needs to know.
type Config struct {
	Options voting.Options
	// Instance names the process on the page, as the original shows the container id, so
	// a person can see load balancing at work.
	Instance string
	// Tracer makes the publish span; nil means no tracing.
	Tracer trace.Tracer
	// VoterKeys sign and verify the voter cookies (see voter.go): the first signs, each
	// verifies. Every replica needs the same keys, or a voter served by two of them
	// counts twice. At least one is required.
	VoterKeys [][]byte
	// Now is the clock that stamps votes; nil means time.Now. Tests skew it.
	Now func() time.Time
	// RateLimit is how many votes per second one client address may cast once it has cast
	// RateBurst at once; 0 means no limit (public demos set one). A vote over it is answered
	// 429 with Retry-After and counted in voting_votes_rate_limited_total. It does not stop a
	// distributed flood; pages and assets are never limited.
	RateLimit float64
	// RateBurst is how many votes one client address may cast at once before RateLimit applies.
	RateBurst int
	// Proxies are the proxies whose X-Forwarded-For names the client for the rate limit; nil
	// trusts none (the TCP peer is the client).
	Proxies *ratelimit.Proxies
	// VersionLabel names the version on the page (a badge) and in the X-Voting-Version header
	// of every answer, so that the versions of a rollout can be told apart; "" shows nothing.
	// See web.CheckVersionLabel for what it may be.
	VersionLabel string
	// Faults are the drill faults of the process (Faults defines the vote service's); nil:
	// none.
	Faults *fault.Set
	// AccentColor colours a bar along the top of the page and the version badge: #rgb,
	// #rrggbb or a name of web.AccentNames; "" keeps the page's own colours.
	AccentColor string
}

// Validate reports every problem of the settings at once: the options, the rate limit, the
// version label and the accent colour. The voter keys, read from a file rather than set, are
// checked by New (and ParseVoterKeys).
func (c Config) Validate() error {
	var errs []error
	if len(c.Options) < 2 {
		errs = append(errs, fmt.Errorf("want at least 2 options, got %d", len(c.Options)))
	}
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("rate limit %g must not be negative (0: no limit)", c.RateLimit))
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		errs = append(errs, fmt.Errorf("rate burst %d must be at least 1 with a rate limit", c.RateBurst))
	}
	if err := web.CheckVersionLabel(c.VersionLabel); err != nil {
		errs = append(errs, err)
	}
	if _, err := web.ParseAccentColor(c.AccentColor); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LogValue is the configuration as the start-up log shows it: the voter keys by count only.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("options", c.Options.String()),
		slog.Int("voter_keys", len(c.VoterKeys)),
		slog.Float64("rate_limit", c.RateLimit),
		slog.Int("rate_burst", c.RateBurst),
		slog.String("trusted_proxies", c.Proxies.String()),
		slog.String("version_label", c.VersionLabel),
		slog.String("accent_color", c.AccentColor),
	)
}

// Service is the vote web service.
type Service struct {
	cfg Config
	pub voting.Publisher
	log *slog.Logger
	// pages holds the page as each choice shows it ("" before voting), rendered once:
	// every vote is answered with one, and rendering per request was the vote path's
	// largest cost after the queue.
	pages  map[string][]byte
	static *web.Static
	// publishSpan starts the publish span; built once, since building span options costs
	// allocations on every vote even when tracing is off.
	publishSpan []trace.SpanStartOption

	// lastStamp is the newest vote time this process gave (Unix µs); see stamp.
	lastStamp atomic.Int64
	// macs holds keyed HMAC states for each of cfg.VoterKeys, in order; see sign.
	macs []*sync.Pool

	// limiter is the per-client rate limit (nil: none); rateLimited counts its 429s.
	limiter       *ratelimit.Limiter
	rateLimited   prometheus.Counter
	accepted      *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	publishErrors prometheus.Counter
	// New voter ids, by reason (voting_voter_ids_issued_total).
	issuedNew, issuedInvalid prometheus.Counter
}

// New returns the service. It loads the embedded assets, renders the page and registers its
// metrics.
func New(cfg Config, pub voting.Publisher, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vote: %w", err)
	}
	if len(cfg.VoterKeys) == 0 {
		return nil, errors.New("vote: no voter key")
	}
	for _, k := range cfg.VoterKeys {
		if len(k) < MinVoterKeyLen {
			return nil, fmt.Errorf("vote: a voter key of %d bytes, want at least %d", len(k), MinVoterKeyLen)
		}
	}
	if cfg.Proxies == nil {
		cfg.Proxies = &ratelimit.Proxies{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	static, err := web.Assets(assetsFS)
	if err != nil {
		return nil, fmt.Errorf("vote: %w", err)
	}
	if err := static.SetAccent(cfg.AccentColor); err != nil {
		return nil, fmt.Errorf("vote: %w", err)
	}
	s := &Service{
		cfg: cfg, pub: pub, log: log, static: static, macs: newMACs(cfg.VoterKeys),
		publishSpan: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)},
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voting_votes_accepted_total",
			Help: "Votes accepted and published to the queue, by option.",
		}, []string{"option"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voting_votes_rejected_total",
			Help: "Votes refused, by reason (invalid, too_large, cross_origin, unavailable, error).",
		}, []string{"reason"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_queue_publish_errors_total",
			Help: "Votes that could not be put on the queue (answered 503).",
		}),
	}
	issued := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voting_voter_ids_issued_total",
		Help: "New voter ids given to browsers, by why: new (no voter cookie) or invalid (a cookie no voter key verifies: forged, altered, or signed with a key no longer configured).",
	}, []string{"reason"})
	s.issuedNew, s.issuedInvalid = issued.WithLabelValues("new"), issued.WithLabelValues("invalid")
	s.pages = map[string][]byte{"": s.renderPage(pageData{})}
	for _, o := range cfg.Options {
		s.pages[o.ID] = s.renderPage(pageData{Choice: o.ID})
	}
	for _, o := range cfg.Options {
		s.accepted.WithLabelValues(o.ID) // so every option shows in /metrics from the start
	}
	for _, r := range []string{"invalid", "too_large", "cross_origin", "unavailable", "error"} {
		s.rejected.WithLabelValues(r)
	}
	reg.MustRegister(s.accepted, s.rejected, s.publishErrors, issued)
	if cfg.RateLimit > 0 {
		s.limiter = ratelimit.New(cfg.RateLimit, cfg.RateBurst)
		s.rateLimited = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voting_votes_rate_limited_total",
			Help: "Votes refused with 429 by the per-client rate limit (--rate-limit).",
		})
		reg.MustRegister(s.rateLimited)
	}
	return s, nil
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: cookieMaxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isHTTPS(r),
	})
}

// isHTTPS reports whether the browser reached us over TLS, directly or through a proxy that
// terminated it. X-Forwarded-Proto can be forged, but a forged one only makes the cookie
// Secure, which never weakens it.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
