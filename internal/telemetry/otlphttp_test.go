package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// receiver is an OTLP/HTTP endpoint for tests: it decodes each request with the generated
// collector types (a test-only import; the binary does not link them) and answers with the
// next of its canned responses, then 200.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	requests  []*collectortrace.ExportTraceServiceRequest
	paths     []string
	headers   []http.Header
	responses []func(http.ResponseWriter)
	attempts  atomic.Int32
	conns     atomic.Int32
}

func newReceiver(t *testing.T, responses ...func(http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{t: t, responses: responses}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.conns.Add(1)
		}
	}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.attempts.Add(1)
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			r.t.Errorf("gzip body: %v", err)
			http.Error(w, "bad gzip", http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		r.t.Errorf("read body: %v", err)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.t.Errorf("Content-Type %q, want application/x-protobuf", ct)
	}
	var msg collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &msg); err != nil {
		r.t.Errorf("decode ExportTraceServiceRequest: %v", err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	var respond func(http.ResponseWriter)
	if len(r.responses) > 0 {
		respond, r.responses = r.responses[0], r.responses[1:]
	}
	r.mu.Unlock()
	if respond != nil {
		respond(w)
		return
	}
	r.mu.Lock()
	r.requests = append(r.requests, &msg)
	r.paths = append(r.paths, req.URL.Path)
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Write(out)
}

// delivered returns the requests answered 200 so far.
func (r *receiver) delivered() []*collectortrace.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*collectortrace.ExportTraceServiceRequest(nil), r.requests...)
}

func status(code int, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestTracerProviderExportsOverOTLPHTTP: spans of a tracer provider built from the standard
// variables reach an OTLP/HTTP receiver with their names, trace ids, parent links, the
// service.name resource attribute and the configured headers, plain and gzipped.
func TestTracerProviderExportsOverOTLPHTTP(t *testing.T) {
	for _, tc := range []struct {
		name, service, wantService string
		env                        map[string]string
		wantPath                   string
		wantGzip                   bool
	}{
		{name: "generic endpoint", service: "vote", wantService: "voting-vote",
			env: map[string]string{}, wantPath: "/v1/traces"},
		{name: "signal endpoint gzip", service: "worker", wantService: "voting-worker",
			env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, wantPath: "/custom/path", wantGzip: true},
		{name: "service name override", service: "result", wantService: "tally",
			env: map[string]string{"OTEL_SERVICE_NAME": "tally", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
				"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, wantPath: "/v1/traces", wantGzip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t)
			env := map[string]string{
				"OTEL_EXPORTER_OTLP_HEADERS":        "authorization=Bearer%20s3cr%3Dt, x-tenant = blue ,x-ignored=1",
				"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "",
			}
			if tc.wantPath == "/v1/traces" {
				env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rcv.srv.URL
			} else {
				env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = rcv.srv.URL + tc.wantPath
				env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:1" // loses to the signal-specific one
			}
			for k, v := range tc.env {
				env[k] = v
			}
			ctx := context.Background()
			tp, stop, err := NewTracerProvider(ctx, envMap(env), tc.service)
			if err != nil {
				t.Fatal(err)
			}
			tr := tp.Tracer("test")
			pctx, parent := tr.Start(ctx, "POST /")
			_, child := tr.Start(pctx, "store record batch")
			child.End()
			parent.End()
			if err := stop(ctx); err != nil {
				t.Fatalf("shutdown (flushes the batch): %v", err)
			}

			reqs := rcv.delivered()
			if len(reqs) == 0 {
				t.Fatal("receiver got no export request")
			}
			rcv.mu.Lock()
			path, hdr := rcv.paths[0], rcv.headers[0]
			rcv.mu.Unlock()
			if path != tc.wantPath {
				t.Errorf("path %q, want %q", path, tc.wantPath)
			}
			if got := hdr.Get("Content-Encoding") == "gzip"; got != tc.wantGzip {
				t.Errorf("gzip %v, want %v", got, tc.wantGzip)
			}
			if got := hdr.Get("Authorization"); got != "Bearer s3cr=t" {
				t.Errorf("authorization header %q, want %q (URL-decoded)", got, "Bearer s3cr=t")
			}
			if got := hdr.Get("X-Tenant"); got != "blue" {
				t.Errorf("x-tenant header %q, want blue", got)
			}

			spans := map[string]*tracepb.Span{}
			for _, req := range reqs {
				for _, rs := range req.ResourceSpans {
					var svc string
					for _, a := range rs.GetResource().GetAttributes() {
						if a.Key == "service.name" {
							svc = a.GetValue().GetStringValue()
						}
					}
					if svc != tc.wantService {
						t.Errorf("service.name %q, want %q", svc, tc.wantService)
					}
					for _, ss := range rs.ScopeSpans {
						for _, s := range ss.Spans {
							spans[s.Name] = s
						}
					}
				}
			}
			p, c := spans["POST /"], spans["store record batch"]
			if p == nil || c == nil {
				t.Fatalf("got spans %v, want POST / and store record batch", keys(spans))
			}
			wantTrace := parent.SpanContext().TraceID()
			if string(p.TraceId) != string(wantTrace[:]) || string(c.TraceId) != string(wantTrace[:]) {
				t.Errorf("trace ids %x, %x; want %x", p.TraceId, c.TraceId, wantTrace[:])
			}
			if string(c.ParentSpanId) != string(p.SpanId) {
				t.Errorf("child's parent %x, want %x", c.ParentSpanId, p.SpanId)
			}
		})
	}
}

func keys(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestOTLPConfig: the endpoint rules (the generic endpoint is a base that gets /v1/traces,
// the signal-specific one is used as is and wins), the timeout, and the settings that are
// refused at startup with the variable's name.
func TestOTLPConfig(t *testing.T) {
	for _, tc := range []struct {
		env          map[string]string
		wantEndpoint string
		wantTimeout  time.Duration
		wantErr      string // substring; "" for no error
	}{
		{env: map[string]string{}, wantEndpoint: "http://localhost:4318/v1/traces", wantTimeout: 10 * time.Second},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, wantEndpoint: "http://collector:4318/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/"}, wantEndpoint: "https://collector:4318/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://gw/otlp"}, wantEndpoint: "http://gw/otlp/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318"}, wantEndpoint: "http://collector:4318"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/x/traces", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"},
			wantEndpoint: "http://c/x/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "250"}, wantTimeout: 250 * time.Millisecond},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "250", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1500"}, wantTimeout: 1500 * time.Millisecond},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, wantErr: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json is not supported"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
			wantErr: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, wantErr: "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, wantErr: "OTEL_EXPORTER_OTLP_COMPRESSION=zstd"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, wantErr: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "novalue"}, wantErr: "OTEL_EXPORTER_OTLP_TRACES_HEADERS"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem"}, wantErr: "must be set together"},
	} {
		c, err := newOTLPHTTPClient(envMap(tc.env))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want one containing %q", tc.env, err, tc.wantErr)
			}
			// The same refusal stops NewTracerProvider, so the process does not start.
			env := map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}
			for k, v := range tc.env {
				env[k] = v
			}
			if _, _, err := NewTracerProvider(context.Background(), envMap(env), "vote"); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: NewTracerProvider error %v, want one containing %q", tc.env, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if tc.wantEndpoint != "" && c.endpoint != tc.wantEndpoint {
			t.Errorf("%v: endpoint %q, want %q", tc.env, c.endpoint, tc.wantEndpoint)
		}
		if tc.wantTimeout != 0 && c.timeout != tc.wantTimeout {
			t.Errorf("%v: timeout %v, want %v", tc.env, c.timeout, tc.wantTimeout)
		}
	}
}

func testSpans(name string) []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
		Name: name, TraceId: []byte("0123456789abcdef"), SpanId: []byte("01234567"),
	}}}}}}
}

func testClient(t *testing.T, env map[string]string) *otlpHTTPClient {
	t.Helper()
	c, err := newOTLPHTTPClient(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	return c
}

// TestOTLPRetries: 429/502/503/504 are retried (after Retry-After when the server sends one)
// and the spans get through; other 4xx and 5xx fail at once with the server's message.
func TestOTLPRetries(t *testing.T) {
	t.Run("503 then 200", func(t *testing.T) {
		rcv := newReceiver(t, status(http.StatusServiceUnavailable), status(http.StatusBadGateway))
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL})
		c.backoff = 10 * time.Millisecond
		if err := c.UploadTraces(context.Background(), testSpans("retried")); err != nil {
			t.Fatal(err)
		}
		if n := rcv.attempts.Load(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
		if got := rcv.delivered(); len(got) != 1 || got[0].ResourceSpans[0].ScopeSpans[0].Spans[0].Name != "retried" {
			t.Errorf("delivered %v", got)
		}
	})
	t.Run("429 honours Retry-After", func(t *testing.T) {
		rcv := newReceiver(t, status(http.StatusTooManyRequests, "Retry-After", "1"))
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL})
		c.backoff = 10 * time.Millisecond
		start := time.Now()
		if err := c.UploadTraces(context.Background(), testSpans("later")); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < time.Second {
			t.Errorf("retried after %v, want at least the server's Retry-After of 1s", d)
		}
		if len(rcv.delivered()) != 1 {
			t.Error("not delivered")
		}
	})
	t.Run("400 is permanent", func(t *testing.T) {
		rcv := newReceiver(t, func(w http.ResponseWriter) {
			b, _ := proto.Marshal(&statuspb.Status{Code: 3, Message: "span name must not be empty"})
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusBadRequest)
			w.Write(b)
		})
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL})
		c.backoff = 10 * time.Millisecond
		err := c.UploadTraces(context.Background(), testSpans("bad"))
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "span name must not be empty") {
			t.Errorf("error %v, want the 400 with the server's message", err)
		}
		if n := rcv.attempts.Load(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
	t.Run("500 plain text is permanent", func(t *testing.T) {
		rcv := newReceiver(t, func(w http.ResponseWriter) {
			http.Error(w, "boom "+strings.Repeat("x", 1000), http.StatusInternalServerError)
		})
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL})
		c.backoff = 10 * time.Millisecond
		err := c.UploadTraces(context.Background(), testSpans("bad"))
		if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("error %v, want the 500 with the body's text", err)
		}
		if len(err.Error()) > 400 {
			t.Errorf("error not truncated: %d bytes", len(err.Error()))
		}
		if n := rcv.attempts.Load(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
	t.Run("retries stop at the timeout", func(t *testing.T) {
		always := make([]func(http.ResponseWriter), 1000)
		for i := range always {
			always[i] = func(w http.ResponseWriter) { http.Error(w, "overloaded", http.StatusServiceUnavailable) }
		}
		rcv := newReceiver(t, always...)
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL, "OTEL_EXPORTER_OTLP_TIMEOUT": "400"})
		c.backoff = 20 * time.Millisecond
		start := time.Now()
		err := c.UploadTraces(context.Background(), testSpans("never"))
		if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "overloaded") {
			t.Errorf("error %v, want the last 503", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("gave up after %v, want about the 400ms timeout", d)
		}
		if n := rcv.attempts.Load(); n < 2 {
			t.Errorf("%d attempts, want retries", n)
		}
		// Every response body was read, so one connection served all attempts.
		if n := rcv.conns.Load(); n != 1 {
			t.Errorf("%d connections for %d attempts, want 1 (bodies drained, connection reused)", n, rcv.attempts.Load())
		}
	})
	t.Run("refused connections are retried until the timeout", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr, "OTEL_EXPORTER_OTLP_TIMEOUT": "300"})
		c.backoff = 20 * time.Millisecond
		start := time.Now()
		err = c.UploadTraces(context.Background(), testSpans("nowhere"))
		if err == nil || !strings.Contains(err.Error(), "giving up after") || strings.Contains(err.Error(), "after 1 attempts") {
			t.Errorf("error %v, want several attempts", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("gave up after %v, want about the 300ms timeout", d)
		}
	})
	t.Run("partial success is reported", func(t *testing.T) {
		rcv := newReceiver(t, func(w http.ResponseWriter) {
			b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{PartialSuccess: &collectortrace.ExportTracePartialSuccess{
				RejectedSpans: 2, ErrorMessage: "too old"}})
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.Write(b)
		})
		c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.srv.URL})
		err := c.UploadTraces(context.Background(), testSpans("old"))
		if err == nil || !strings.Contains(err.Error(), "rejected 2 spans: too old") {
			t.Errorf("error %v, want the partial success", err)
		}
		if n := rcv.attempts.Load(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
}

// TestOTLPTimeout: an export to a collector that does not answer gives up after
// OTEL_EXPORTER_OTLP_TIMEOUT.
func TestOTLPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := testClient(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "300"})
	start := time.Now()
	err := c.UploadTraces(context.Background(), testSpans("slow"))
	d := time.Since(start)
	if err == nil {
		t.Fatal("export to a silent collector succeeded")
	}
	if d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 300ms", d)
	}
}

// TestEncodeTraceRequest: the hand-written encoding is the ExportTraceServiceRequest the
// generated code would produce.
func TestEncodeTraceRequest(t *testing.T) {
	spans := append(testSpans("one"), testSpans("two")...)
	got, err := encodeTraceRequest(spans)
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: spans})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("encoding differs from the generated message's:\n got %x\nwant %x", got, want)
	}
}
