package web_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/web"
)

// series counts the series of every metric in reg.
func series(t *testing.T, reg prometheus.Gatherer) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// requestsWith returns voting_http_requests_total for the label values given (name: value).
func requestsWith(t *testing.T, reg prometheus.Gatherer, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "voting_http_requests_total" {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue metrics
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// TestInventedMethodsMakeNoSeries: a client may send any token as the method and any path;
// after the first request of that kind, 1,000 more with invented methods (and invented
// paths) add no series: they all count under method "other" and route "unmatched" or the
// pattern they matched.
func TestInventedMethodsMakeNoSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("/any", func(w http.ResponseWriter, _ *http.Request) {}) // every method
	var logs bytes.Buffer
	h := web.Instrument("test", newLogger(t, &logs), web.NewMetrics(reg), noop.NewTracerProvider().Tracer(""), mux)
	srv := httptest.NewServer(h)
	defer srv.Close()

	send := func(method, path string) int {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// One of each kind first: the series a client may legitimately create.
	for _, m := range []string{"GET", "POST", "BREW"} {
		send(m, "/")
		send(m, "/any")
		send(m, "/nowhere")
	}
	before := series(t, reg)
	for i := range 1000 {
		method := fmt.Sprintf("X-%04d", i)
		if i%2 == 1 {
			method = fmt.Sprintf("get%d", i) // methods are case-sensitive: "get" is not GET
		}
		path := []string{"/", "/any", fmt.Sprintf("/nowhere/%d", i)}[i%3]
		send(method, path)
	}
	if after := series(t, reg); after != before {
		t.Errorf("series: %d before 1,000 invented methods, %d after; want no new series", before, after)
	}
	if got := requestsWith(t, reg, map[string]string{"method": "other"}); got != 1003 {
		t.Errorf(`requests with method="other": %v, want 1003`, got)
	}
	if got := requestsWith(t, reg, map[string]string{"method": "GET", "route": "GET /{$}", "code": "200"}); got != 1 {
		t.Errorf(`GET / requests: %v, want 1 (known methods keep their own label)`, got)
	}
}
