package doctor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeService serves fixed answers by path.
func fakeService(t *testing.T, answers map[string]struct {
	status int
	body   string
}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		w.Write([]byte(a.body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type reply = struct {
	status int
	body   string
}

const (
	optionsJSON = `{"options":[{"id":"a","label":"Cats"},{"id":"b","label":"Dogs"}]}`
	resultsJSON = `{"options":[{"id":"a","label":"Cats","count":2,"percent":66.67},{"id":"b","label":"Dogs","count":1,"percent":33.33}],"total":3}`
	readyJSON   = `{"status":"ok","checks":{"redis":"ok"}}`
)

func TestWebServices(t *testing.T) {
	vote := fakeService(t, map[string]reply{"/api/options": {200, optionsJSON}})
	result := fakeService(t, map[string]reply{"/api/results": {200, resultsJSON}})
	notReadyAdmin := fakeService(t, map[string]reply{"/readyz": {503, `{"status":"unavailable","checks":{"redis":"redisqueue: ping: queue unavailable: dial tcp 127.0.0.1:1: connect: connection refused","sqlite":"ok"}}`}})
	startingAdmin := fakeService(t, map[string]reply{"/readyz": {503, `{"status":"starting","checks":{}}`}})
	readyAdmin := fakeService(t, map[string]reply{"/readyz": {200, readyJSON}})
	noTally := fakeService(t, map[string]reply{"/api/results": {503, `{"error":"service unavailable, please retry (request id x)"}`}})
	resultNotReady := fakeService(t, map[string]reply{"/readyz": {503, `{"status":"unavailable","checks":{"postgres":"postgres: connection refused","tally":"no tally read yet"}}`}})
	other := fakeService(t, map[string]reply{})
	failing := fakeService(t, map[string]reply{"/api/options": {502, "bad gateway"}})

	tests := []struct {
		name  string
		cfg   Config
		hop   string
		cause Cause // "" when healthy
		want  []string
	}{
		{"vote ok", Config{VoteURL: vote, VoteAdminURL: readyAdmin}, HopVote, "", []string{"offers a (Cats), b (Dogs); ready"}},
		{"vote not ready", Config{VoteURL: vote, VoteAdminURL: notReadyAdmin}, HopVote, CauseNotReady,
			[]string{"the vote service answers but is not ready: its /readyz says redis: redisqueue: ping", "connection refused"}},
		{"vote starting", Config{VoteURL: vote, VoteAdminURL: startingAdmin}, HopVote, CauseNotReady, []string{"it is starting"}},
		{"admin URL is not an admin port", Config{VoteURL: vote, VoteAdminURL: vote}, HopVote, CauseWrongServer, []string{"not a readiness report", "--vote-admin-url"}},
		{"vote url is another service", Config{VoteURL: result}, HopVote, CauseWrongServer, []string{"/api/options answered 404", "point --vote-url at the vote service (port 8080 by default)"}},
		{"vote behind a failing proxy", Config{VoteURL: failing}, HopVote, CauseOther, []string{"answered 502 Bad Gateway (bad gateway)"}},
		{"result ok", Config{ResultURL: result}, HopResult, "", []string{"3 votes counted (a 2, b 1)"}},
		{"result without tally", Config{ResultURL: noTally}, HopResult, CauseNoTally, []string{"answered 503: the result service has not read the tally yet", "cannot read PostgreSQL"}},
		{"result without tally, admin", Config{ResultURL: noTally, ResultAdminURL: resultNotReady}, HopResult, CauseNoTally,
			[]string{"has not read the tally yet", "its /readyz says postgres: postgres: connection refused; tally: no tally read yet"}},
		{"result url is another service", Config{ResultURL: other}, HopResult, CauseWrongServer, []string{"/api/results answered 404"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Timeout = 2 * time.Second
			var h Hop
			if tt.hop == HopVote {
				h = checkVote(context.Background(), tt.cfg)
			} else {
				h = checkResult(context.Background(), tt.cfg)
			}
			t.Logf("%s: %s", h.Status, h.Message)
			switch {
			case tt.cause == "" && h.Status != OK:
				t.Fatalf("got %s %q: %s, want ok", h.Status, h.Cause, h.Message)
			case tt.cause != "" && (h.Status != Broken || h.Cause != tt.cause):
				t.Fatalf("got %s %q: %s, want broken with %q", h.Status, h.Cause, h.Message, tt.cause)
			}
			for _, w := range tt.want {
				if !strings.Contains(h.Message, w) {
					t.Errorf("message %q lacks %q", h.Message, w)
				}
			}
		})
	}
}

// TestReport: hops in pipeline order, the first broken one named, OK only when every hop
// checked is healthy, and the text ends with the verdict.
func TestReport(t *testing.T) {
	vote := fakeService(t, map[string]reply{"/api/options": {200, optionsJSON}})
	result := fakeService(t, map[string]reply{"/api/results": {200, resultsJSON}})
	r := Run(context.Background(), Config{VoteURL: vote, ResultURL: result, Timeout: time.Second})
	if !r.OK || r.FirstBroken != "" || len(r.Hops) != 5 {
		t.Fatalf("healthy: got %+v", r)
	}
	var b strings.Builder
	r.WriteText(&b)
	if !strings.HasSuffix(b.String(), "healthy: every hop checked is ok (vote, result; not checked: redis, worker, postgres)\n") {
		t.Errorf("text:\n%s", &b)
	}

	r = Run(context.Background(), Config{VoteURL: vote, ResultURL: "http://" + closedPort(t), Timeout: time.Second})
	if r.OK || r.FirstBroken != HopResult {
		t.Fatalf("result down: got %+v", r)
	}
	for i, name := range []string{HopVote, HopRedis, HopWorker, HopPostgres, HopResult} {
		if r.Hops[i].Name != name {
			t.Errorf("hop %d is %s, want %s", i, r.Hops[i].Name, name)
		}
	}
	b.Reset()
	r.WriteText(&b)
	if !strings.Contains(b.String(), "result    BROKEN   the connection to") ||
		!strings.HasSuffix(b.String(), "broken: start with result, the first broken hop in the pipeline (1 of 2 checked hops broken: result; not checked: redis, worker, postgres)\n") {
		t.Errorf("text:\n%s", &b)
	}
}

func TestValidate(t *testing.T) {
	base := Config{Timeout: time.Second, ClaimTimeout: time.Second, Stream: "votes", Group: "workers", DeadLetterStream: "votes:dead"}
	bad := base
	bad.VoteURL, bad.RedisURL, bad.PostgresURL, bad.Sample = "localhost:8080", "redis://:s3cret@[::1", "postgres://u:s3cret@host:notaport/db", -1
	err := bad.Validate()
	for _, w := range []string{`--vote-url "localhost:8080" is not an http:// or https:// URL`, "--redis-url is not a Redis URL", "--postgres-url is not a PostgreSQL URL", "--sample -1ns"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v, want %q", err, w)
		}
	}
	if err != nil && strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows a password: %v", err)
	}
	if err := base.Validate(); err == nil || !strings.Contains(err.Error(), "nothing to check") {
		t.Errorf("no URL: got %v, want nothing to check", err)
	}
}
