package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/votingapp/voting/internal/proctest"
)

// TestOneTracePerVote: with tracing on, a vote's POST, its publish, the worker's handling
// and the store write are spans of one trace, each the child of the one before, and the
// result's push of the tally that counts it joins the trace too; probe routes make no spans.
func TestOneTracePerVote(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) }) // after the app has stopped

	app := startAppWith(t, &cmdEnv{getenv: func(string) string { return "" }, tracing: tp}, []string{"vote", "result", "admin"},
		append([]string{"all", "--data-dir=" + t.TempDir(), "--log-level=debug"}, loopback...)...)
	logs := app.logs
	app.waitReady()
	exp.Reset()

	resp, err := http.Post(app.url("vote")+"/api/vote", "application/json", strings.NewReader(`{"vote":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("vote: %s", resp.Status)
	}
	getResults(t, app.url("result")) // not traced: the chain below must not depend on it

	want := []string{"POST /api/vote", "publish vote", "record vote", "store record batch", "push result"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exp.GetSpans()
		byName := map[string]tracetest.SpanStub{}
		for _, s := range spans {
			byName[s.Name] = s
		}
		complete := true
		for _, n := range want {
			_, ok := byName[n]
			complete = complete && ok
		}
		if complete {
			parents := map[string]string{"publish vote": "POST /api/vote", "record vote": "publish vote",
				"store record batch": "record vote", "push result": "publish vote"}
			for child, parent := range parents {
				parent, child := byName[parent], byName[child]
				if child.SpanContext.TraceID() != parent.SpanContext.TraceID() || child.Parent.SpanID() != parent.SpanContext.SpanID() {
					t.Errorf("span %q is not a child of %q in the same trace", child.Name, parent.Name)
				}
			}
			// The request's log line carries its request id and trace id.
			if !logs.contains(`"msg":"request"`, `"route":"POST /api/vote"`, `"request_id":"`, `"trace_id":"`+byName[want[0]].SpanContext.TraceID().String()) {
				t.Errorf("no log line of the request with its request id and trace id; logs:\n%s", logs)
			}
			for _, s := range spans {
				if strings.Contains(s.Name, "readyz") || strings.Contains(s.Name, "livez") || strings.Contains(s.Name, "metrics") {
					t.Errorf("probe route traced: %q", s.Name)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range spans {
				names = append(names, s.Name)
			}
			t.Fatalf("spans %v, want %v", names, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTraceExportErrorsAreLogged: when the collector cannot be reached, the export error is
// a line of the service's structured log, not a plain line of the SDK's own.
func TestTraceExportErrorsAreLogged(t *testing.T) {
	collector := proctest.FreeAddr(t) // nothing listens there
	vars := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + collector,
		"OTEL_EXPORTER_OTLP_TIMEOUT":  "200",
	}
	// The SDK's batcher reads its delay from the process environment, not from getenv:
	// export within 50 ms instead of the default 5 s.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	app := startApp(t, vars, []string{"vote", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
	app.waitReady()
	resp, err := http.Post(app.url("vote")+"/api/vote", "application/json", strings.NewReader(`{"vote":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !app.logs.contains(`"level":"WARN"`, `"msg":"export traces"`, collector) {
		if time.Now().After(deadline) {
			t.Fatalf("no structured log line for the failed export; logs:\n%s", app.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
