package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/buildinfo"
)

// Propagator carries trace context in W3C traceparent form: in HTTP headers, and in queue
// messages from the vote service to the worker.
var Propagator = propagation.TraceContext{}

// TracingEnabled reports whether the standard OpenTelemetry variables ask for traces:
// OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint, unless OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none. Tracing is off by default: no exporter, no cost.
func TracingEnabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// NewTracerProvider returns the process's tracer provider and a function that flushes and
// stops it. When tracing is not enabled it is a no-op provider. Spans are batched and sent
// over OTLP/HTTP with protobuf bodies (see otlphttp.go), configured by the standard exporter
// variables read through getenv: OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT, _HEADERS, _TIMEOUT,
// _COMPRESSION, _PROTOCOL (http/protobuf only; anything else is an error here) and the
// certificate variables. The SDK reads the sampler (OTEL_TRACES_SAMPLER,
// OTEL_TRACES_SAMPLER_ARG) from the process environment; OTEL_SERVICE_NAME overrides the
// service name.
func NewTracerProvider(ctx context.Context, getenv func(string) string, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if !TracingEnabled(getenv) {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	client, err := newOTLPHTTPClient(getenv)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	name := "voting-" + service
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		name = v
	}
	res := resource.NewSchemaless(semconv.ServiceName(name), semconv.ServiceVersion(buildinfo.Version()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// InjectTraceParent returns the W3C traceparent of the span in ctx, or "" when there is none
// (tracing off), for carrying in a queue message.
func InjectTraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	Propagator.Inject(ctx, c)
	return c["traceparent"]
}

// ExtractTraceParent returns ctx with the remote span context of a traceparent value.
func ExtractTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
