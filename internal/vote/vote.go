// Package vote is the voting web service: it serves the voting page, gives each browser a
// voter id, validates each choice against the configured options and publishes it to the
// queue. A 2xx answer means the vote is in the queue. It never reads or writes the store.
package vote

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

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

	accepted      *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	publishErrors prometheus.Counter
}

// New returns the service. It loads the embedded assets, renders the page and registers its
// metrics.
func New(cfg Config, pub voting.Publisher, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if len(cfg.Options) < 2 {
		return nil, fmt.Errorf("vote: want at least 2 options, got %d", len(cfg.Options))
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	static, err := web.Assets(assetsFS)
	if err != nil {
		return nil, fmt.Errorf("vote: %w", err)
	}
	s := &Service{
		cfg: cfg, pub: pub, log: log, static: static,
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
	reg.MustRegister(s.accepted, s.rejected, s.publishErrors)
	return s, nil
}

// Voter cookies. The voter id is 128 random bits: unguessable, so one browser cannot
// overwrite another's vote. The vote cookie remembers the choice, so the page still marks
// it after a reload (the vote service never reads the store).
const (
	voterCookie  = "voter_id"
	choiceCookie = "vote"
	cookieMaxAge = 365 * 24 * 60 * 60
)

// voterID returns the request's voter id from its cookie, or a new one when the cookie is
// missing or not a voter id.
func voterID(r *http.Request) string {
	if c, err := r.Cookie(voterCookie); err == nil && voting.ValidVoterID(c.Value) {
		return c.Value
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
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
