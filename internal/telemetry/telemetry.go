// Package telemetry sets up the process's logger and metrics registry. It holds no global
// state: each process (and each test) builds its own and passes them down.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/votingapp/voting/internal/buildinfo"
)

// NewLogger returns a slog logger writing JSON (format "json") or text (format "text") at the
// given level ("debug", "info", "warn", "error"), with the service name and version on every
// line.
func NewLogger(w io.Writer, level, format, service string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	return slog.New(contextHandler{h}).With("service", service, "version", buildinfo.Version()), nil
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id, which every log line written with ctx
// then shows.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id of ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// contextHandler adds the request id and the trace and span ids of the record's context to
// each line, so every line a request logs (with the *Context methods) can be found by them.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(as)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// Rollout is what voting_build_info says of a process besides its build: the version label
// and accent colour a deployment gives the services that serve a page (--version-label,
// --accent-color), so that dashboards and a canary analysis can split by version. Both are
// empty for the worker, and wherever they are not set.
type Rollout struct {
	VersionLabel string
	AccentColor  string
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors and
// voting_build_info. One registry per process: the global default registry would make a
// second server in one test process panic on duplicate registration.
//
// voting_build_info always has the labels version_label and accent_color, empty when not set
// (Prometheus then stores no such label), so every process exports the same label names.
func NewRegistry(r Rollout) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "voting_build_info",
			Help: "Always 1; the labels say which build is running, and under which version label and accent colour (--version-label, --accent-color).",
			ConstLabels: prometheus.Labels{"version": buildinfo.Version(), "commit": buildinfo.Commit(),
				"version_label": r.VersionLabel, "accent_color": r.AccentColor},
		}, func() float64 { return 1 }),
	)
	return reg
}
