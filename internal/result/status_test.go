package result_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/votingapp/voting/internal/proctest"
	"github.com/votingapp/voting/internal/web"
)

// TestWebSocketStatusInMetrics: the upgrade answers on the hijacked connection, past the
// ResponseWriter; the request metrics still count a 101 for an upgrade and the refusal's own
// status for a bad handshake, not a 200.
func TestWebSocketStatusInMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, _, reg := newService(t, "a=Cats,b=Dogs")
	go svc.Run(ctx)
	m := web.NewMetrics(reg)
	srv := httptest.NewServer(web.Instrument("result", slog.New(slog.DiscardHandler), m, noop.NewTracerProvider().Tracer(""), svc.Handler()))
	defer srv.Close()

	c := proctest.MustDialWebSocket(t, srv.URL+"/ws")
	if _, err := c.Read(5 * time.Second); err != nil {
		t.Fatalf("snapshot on connect: %v", err)
	}
	// A handshake without its key is refused by the upgrader with 400.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("handshake without a key: %s, want 400", resp.Status)
	}

	// The handler's deferred metrics run after the answer is written: wait for them.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := wsRequests(t, reg)
		if got["101"] == 1 && got["400"] == 1 && len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("voting_http_requests_total for GET /ws by code: %v, want 101: 1 and 400: 1", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wsRequests returns voting_http_requests_total of route GET /ws, by code.
func wsRequests(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "voting_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == "GET /ws" {
				got[labels["code"]] += m.GetCounter().GetValue()
			}
		}
	}
	return got
}
