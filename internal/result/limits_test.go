package result_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/proctest"
	"github.com/votingapp/voting/internal/result"
	"github.com/votingapp/voting/internal/sqlitestore"
	"github.com/votingapp/voting/internal/voting"
)

// metricValue returns the value of the series of metric name whose label has value
// (label "" for a metric without labels).
func metricValue(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// TestWebSocketLimits: past the process's limit and past one address's (an IPv4 address,
// an IPv6 /64), a handshake is answered 503 with Retry-After, counted by reason, and logged
// with what to do; a client that leaves frees its place.
func TestWebSocketLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlitestore.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts, err := voting.ParseOptions("a=Cats,b=Dogs")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var logs proctest.Buffer
	svc, err := result.New(result.Config{
		Options: opts, PollInterval: time.Hour, MaxClients: 4, MaxClientsPerAddr: 2,
		// As a trusted proxy's X-Forwarded-For would name them.
		ClientAddr: func(r *http.Request) netip.Addr {
			a, _ := netip.ParseAddr(r.Header.Get("X-Client"))
			return a
		},
	}, st, slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	go svc.Run(ctx)
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	dial := func(client string) (*proctest.WebSocket, error) {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := proctest.DialWebSocket(dctx, srv.URL+"/ws", http.Header{"X-Client": {client}})
		if err == nil {
			t.Cleanup(func() { c.Close() })
			if _, err := c.Read(5 * time.Second); err != nil {
				t.Fatalf("%s: no snapshot on connect: %v", client, err)
			}
		}
		return c, err
	}
	mustDial := func(client string) *proctest.WebSocket {
		t.Helper()
		c, err := dial(client)
		if err != nil {
			t.Fatalf("%s: %v, want a connection", client, err)
		}
		return c
	}
	mustRefuse := func(client, reason string, want float64) {
		t.Helper()
		_, err := dial(client)
		var status ws.StatusError
		if !errors.As(err, &status) || int(status) != http.StatusServiceUnavailable {
			t.Fatalf("%s: %v, want 503 (%s)", client, err, reason)
		}
		if got := metricValue(t, reg, "voting_websocket_refused_total", "reason", reason); got != want {
			t.Errorf("voting_websocket_refused_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}

	// One IPv6 /64 is one client: two places, whatever the addresses in it.
	mustDial("2001:db8::1")
	mustDial("2001:db8::2")
	mustRefuse("2001:db8::ffff", "client_limit", 1)
	// Another IPv4 address has places of its own, up to the process's limit.
	a := mustDial("192.0.2.1")
	mustDial("192.0.2.1")
	mustRefuse("192.0.2.1", "process_limit", 1) // both limits met: the process's counts
	mustRefuse("198.51.100.7", "process_limit", 2)
	if got := metricValue(t, reg, "voting_websocket_clients", "", ""); got != 4 {
		t.Errorf("voting_websocket_clients = %v, want 4", got)
	}

	// A client that leaves frees its place, for anyone.
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, reg, "voting_websocket_clients", "", "") != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the closed client still holds its place")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustDial("198.51.100.7")

	// The answer says to retry, and the log says which limit, for whom, and what to do.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ws", nil)
	req.Header.Set("X-Client", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "retry") {
		t.Errorf("refusal: %d, Retry-After %q, body %q; want 503, a Retry-After and a message", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for _, want := range [][]string{
		{`"msg":"websocket refused"`, `"reason":"client_limit"`, `"limit":2`, `"client":"2001:db8::ffff"`, "--trusted-proxies"},
		{`"msg":"websocket refused"`, `"reason":"process_limit"`, `"limit":4`, "--max-websockets"},
	} {
		found := false
		for _, line := range strings.Split(logs.String(), "\n") {
			ok := true
			for _, part := range want {
				ok = ok && strings.Contains(line, part)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("no log line with %q; logs:\n%s", want, logs.String())
		}
	}
}
