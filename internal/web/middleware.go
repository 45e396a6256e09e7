package web

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/votingapp/voting/internal/telemetry"
)

// Metrics are the RED metrics of the public HTTP servers, labelled by server, route pattern,
// method and status. Every label has a fixed set of values, so no client can grow the number
// of series: the route is the ServeMux pattern (or "unmatched"), never the raw path; the
// method is one of HTTP's own or "other" (methodLabel); the status is one our handlers or
// net/http wrote.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the HTTP metrics. Create it once per process: in `all` mode both web
// servers share it, told apart by the server label.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voting_http_requests_total",
			Help: "HTTP requests served, by server, route pattern, method and status code.",
		}, []string{"server", "route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "voting_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by server and route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"server", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Instrument wraps a service's handler with what every public route needs, outermost first:
// a request id (taken from X-Request-Id when it is sane, so a proxy's id carries through),
// a server span (continuing the caller's trace when it sends a traceparent), panic recovery
// (a 500 and one log line instead of a dropped connection), a debug log line per request, and
// the metrics. Only the public servers are instrumented: probes and scrapes on the admin
// listener make no spans and no log lines.
func Instrument(server string, log *slog.Logger, m *Metrics, tracer trace.Tracer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if len(id) == 0 || len(id) > 64 || !printable(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ctx := r.Context()
		if _, ok := r.Header["Traceparent"]; ok { // the propagator reads nothing else
			ctx = telemetry.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		method := methodLabel(r.Method)
		ctx, span := tracer.Start(telemetry.WithRequestID(ctx, id), method, serverSpan)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.ErrorContext(ctx, "panic serving request", "route", r.Pattern, "panic", p, "stack", string(debug.Stack()))
				if !sw.wrote {
					http.Error(sw, "internal error (request id "+id+")", http.StatusInternalServerError)
				}
			}
			route := r.Pattern // set by ServeMux on this same request once it has matched
			if route == "" {
				route = "unmatched"
			}
			d := time.Since(start)
			code := sw.code()
			m.requests.WithLabelValues(server, route, method, strconv.Itoa(code)).Inc()
			m.duration.WithLabelValues(server, route).Observe(d.Seconds())
			// Both are off by default; checking first saves building their arguments on
			// every request.
			if log.Enabled(ctx, slog.LevelDebug) {
				log.DebugContext(ctx, "request", "route", route, "method", r.Method, "status", code, "duration", d)
			}
			if span.IsRecording() {
				span.SetName(route)
				span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", code))
				if method == otherMethod {
					// OpenTelemetry's convention for a method it does not know.
					span.SetAttributes(attribute.String("http.request.method", "_OTHER"), attribute.String("http.request.method_original", r.Method))
				} else {
					span.SetAttributes(attribute.String("http.request.method", method))
				}
				if code >= 500 {
					span.SetStatus(codes.Error, http.StatusText(code))
				}
			}
			span.End()
		}()
		next.ServeHTTP(sw, r)
	})
}

// otherMethod is the method label of every request whose method is not one of HTTP's own.
const otherMethod = "other"

// methodLabel returns the method as a metric label: one of the methods of RFC 9110 and
// PATCH, or "other". net/http accepts any token as a method, and a label taken from it raw
// gave every invented method a series of its own (16,458 series from 20,000 requests, which
// never went away).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return otherMethod
}

// serverSpan is made once: an option is an interface value, allocated when it is made.
var serverSpan = trace.WithSpanKind(trace.SpanKindServer)

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status code. It passes Unwrap through so that
// http.ResponseController (used by the WebSocket upgrade to hijack) reaches the real writer.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// SetHijackedStatus records code as the answer to the request, for Instrument's metrics, log
// line and span, when the handler answered on a hijacked connection, past the ResponseWriter
// (a WebSocket upgrade writes its 101, or its refusal, itself). Without it such a request
// would count as a 200.
func SetHijackedStatus(w http.ResponseWriter, code int) {
	for {
		if sw, ok := w.(*statusWriter); ok {
			if !sw.wrote {
				sw.status, sw.wrote = code, true
			}
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

func (w *statusWriter) code() int {
	if !w.wrote {
		return http.StatusOK
	}
	if w.status == 0 {
		return http.StatusSwitchingProtocols
	}
	return w.status
}

// SecurityHeaders sets the headers every page of ours can live with: a Content-Security-Policy
// with no inline script or style (all assets are our own files), no framing, no MIME
// sniffing, and no referrer to other sites.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
