package web_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// newLogger is the services' logger (it adds the request id to lines logged with a request's
// context), writing to buf.
func newLogger(t *testing.T, buf *bytes.Buffer) *slog.Logger {
	t.Helper()
	log, err := telemetry.NewLogger(buf, "debug", "json", "test")
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func instrument(log *slog.Logger, h http.Handler) http.Handler {
	return web.Instrument("test", log, web.NewMetrics(prometheus.NewRegistry()), noop.NewTracerProvider().Tracer(""), h)
}

// errSecret is an internal error of the kind that must stay in the log: it names a server,
// a query and a credential.
var errSecret = errors.New(`dial tcp 10.0.0.5:5432: password authentication failed for user "voting" (SELECT * FROM votes)`)

func serveOne(t *testing.T, h http.Handler) (*httptest.ResponseRecorder, string) {
	t.Helper()
	var logs bytes.Buffer
	w := httptest.NewRecorder()
	instrument(newLogger(t, &logs), web.SecurityHeaders(h)).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
	return w, logs.String()
}

// TestInternalErrorsStayInTheLog: the user gets a generic message and a request id; the log
// line with that id has the real error.
func TestInternalErrorsStayInTheLog(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		asJSON bool
	}{
		{"internal", fmt.Errorf("render page: %w", errSecret), 500, false},
		{"internal JSON", errSecret, 500, true},
		{"unavailable", fmt.Errorf("publish: %w: %w", voting.ErrUnavailable, errSecret), 503, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := newLogger(t, &logs)
			w, _ := serveOne(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				web.Error(w, r, log, tc.err, tc.asJSON)
			}))
			id := w.Header().Get("X-Request-Id")
			body := w.Body.String()
			if w.Code != tc.status || id == "" || !strings.Contains(body, "request id "+id) {
				t.Fatalf("got %d %q (id %q), want %d naming the request id", w.Code, body, id, tc.status)
			}
			for _, leak := range []string{"10.0.0.5", "password", "SELECT", "dial"} {
				if strings.Contains(body, leak) {
					t.Errorf("answer %q shows %q", body, leak)
				}
			}
			if !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "password authentication failed") {
				t.Errorf("log lacks the request id or the cause: %s", logs.String())
			}
		})
	}
}

// TestPanicIsAGeneric500: a panic in a handler answers 500 with the request id, logs the
// panic with its stack, and the server goes on.
func TestPanicIsAGeneric500(t *testing.T) {
	w, logs := serveOne(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(errSecret)
	}))
	id := w.Header().Get("X-Request-Id")
	if w.Code != 500 || !strings.Contains(w.Body.String(), id) || strings.Contains(w.Body.String(), "password") {
		t.Fatalf("got %d %q, want a generic 500 with the request id %s", w.Code, w.Body.String(), id)
	}
	if !strings.Contains(logs, "panic serving request") || !strings.Contains(logs, id) || !strings.Contains(logs, "password authentication failed") {
		t.Errorf("panic not logged with its id and cause: %s", logs)
	}
	if w.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("the 500 after a panic lacks the security headers")
	}
}

// TestSecurityHeaders pins the policy: no inline script or style, no framing, no sniffing,
// no referrer to other sites.
func TestSecurityHeaders(t *testing.T) {
	w, _ := serveOne(t, http.NotFoundHandler())
	h := w.Header()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "*") {
		t.Errorf("CSP %q allows unsafe sources or wildcards", csp)
	}
	for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
}

// A request id from a proxy is kept when sane, and replaced when it could forge log lines.
func TestRequestIDFromProxy(t *testing.T) {
	for in, keep := range map[string]bool{"abc-123": true, "evil\nlevel=ERROR": false, strings.Repeat("x", 65): false, "": false} {
		var logs bytes.Buffer
		h := instrument(newLogger(t, &logs), http.NotFoundHandler())
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["X-Request-Id"] = []string{in}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := w.Header().Get("X-Request-Id"); (got == in) != keep || got == "" {
			t.Errorf("X-Request-Id %q: answered %q, keep %v", in, got, keep)
		}
	}
}
