package main

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/votingapp/voting/internal/proctest"
)

// TestWebSocketLimitsFromFlags: --max-websockets (here from its variable) and
// --max-websockets-per-client bound result's WebSockets, telling clients apart behind a
// proxy of --trusted-proxies; handshakes past them are answered 503, counted and logged.
func TestWebSocketLimitsFromFlags(t *testing.T) {
	env := map[string]string{"VOTING_MAX_WEBSOCKETS": "3"}
	app := startApp(t, env, []string{"result", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir(),
		"--max-websockets-per-client=2", "--trusted-proxies=127.0.0.1"}, loopback...)...)
	app.waitReady()
	dial := func(client string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := proctest.DialWebSocket(ctx, app.url("result")+"/ws", http.Header{"X-Forwarded-For": {client}})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return err
	}
	refused := func(err error) bool {
		var status ws.StatusError
		return errors.As(err, &status) && int(status) == http.StatusServiceUnavailable
	}
	for i, step := range []struct {
		client  string
		refused bool
	}{
		{"203.0.113.5:51234", false},
		{"203.0.113.5", false},
		{"203.0.113.5", true}, // its third: past the limit per client
		{"[2001:db8::1]:443", false},
		{"198.51.100.7", true}, // the fourth: past the process's limit
	} {
		if err := dial(step.client); refused(err) != step.refused || (err != nil && !refused(err)) {
			t.Fatalf("handshake %d from %s: %v, want refused %v", i+1, step.client, err, step.refused)
		}
	}
	for _, reason := range []string{"client_limit", "process_limit"} {
		if got := metricValue(t, app, `voting_websocket_refused_total{reason="`+reason+`"}`); got != 1 {
			t.Errorf("refused by %s: %v, want 1", reason, got)
		}
		if !app.logs.contains(`"msg":"websocket refused"`, `"reason":"`+reason+`"`) {
			t.Errorf("no log line for the refusal by %s; logs:\n%s", reason, app.logs)
		}
	}
	if got := metricValue(t, app, "voting_websocket_clients"); got != 3 {
		t.Errorf("voting_websocket_clients = %v, want 3", got)
	}
}
