package vote_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/vote"
)

// TestPublishSpan: with tracing on, a vote makes a producer span that names the option.
func TestPublishSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	svc := newService(t, "a=Cats,b=Dogs", vote.Config{Tracer: tp.Tracer("vote")}, memqueue.New(memqueue.Config{}))
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("vote=b"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	svc.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("POST /: got %d, want 200", w.Code)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "publish vote" || spans[0].SpanKind != trace.SpanKindProducer {
		t.Fatalf("spans: %+v, want one producer span named publish vote", spans)
	}
	if want := attribute.String("voting.option", "b"); len(spans[0].Attributes) != 1 || spans[0].Attributes[0] != want {
		t.Errorf("span attributes: %v, want %v", spans[0].Attributes, want)
	}
}
