package vote_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/vote"
)

// newBenchHandler returns the service's full handler (cross-origin check, routing, the
// handlers) on the in-process queue, which a background consumer keeps empty, so that the
// benchmarks time this process's own work per request and no network or Redis.
func newBenchHandler(b *testing.B) http.Handler {
	b.Helper()
	q := memqueue.New(memqueue.Config{})
	svc := newService(b, "a=Cats,b=Dogs", vote.Config{Instance: "bench"}, q)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := q.Consumer("bench")
		defer c.Close()
		for ctx.Err() == nil {
			ds, err := c.Receive(ctx, 1000)
			if err != nil {
				return
			}
			_ = c.Ack(ctx, ds...)
		}
	}()
	b.Cleanup(func() { cancel(); <-done; q.Close() })
	return svc.Handler()
}

// serve runs one request through h and fails the benchmark on a status other than want.
func serve(b *testing.B, h http.Handler, method, target, contentType, body string, want int) {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != want {
		b.Fatalf("%s %s: got %d, want %d", method, target, w.Code, want)
	}
}

// BenchmarkFormVote is one `POST /` with `vote=a` from a new voter, as the seed and the load
// generator send it: parse, validate, new voter id, publish, cookies, and the page with the
// choice marked. This is the path of the 24,000 votes/s target.
func BenchmarkFormVote(b *testing.B) {
	h := newBenchHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, http.MethodPost, "/", "application/x-www-form-urlencoded", "vote=a", http.StatusOK)
	}
}

// BenchmarkFormVoteParallel is BenchmarkFormVote from many goroutines at once (64 per CPU
// with -cpu 1, as 64 clients), so contention in the handler or the metrics shows.
func BenchmarkFormVoteParallel(b *testing.B) {
	h := newBenchHandler(b)
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serve(b, h, http.MethodPost, "/", "application/x-www-form-urlencoded", "vote=a", http.StatusOK)
		}
	})
}

// BenchmarkAPIVote is one `POST /api/vote` with JSON, answered 202 with a small JSON body.
func BenchmarkAPIVote(b *testing.B) {
	h := newBenchHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, http.MethodPost, "/api/vote", "application/json", `{"vote":"b"}`, http.StatusAccepted)
	}
}

// BenchmarkPage is `GET /`, the voting page before a vote.
func BenchmarkPage(b *testing.B) {
	h := newBenchHandler(b)
	b.ReportAllocs()
	for b.Loop() {
		serve(b, h, http.MethodGet, "/", "", "", http.StatusOK)
	}
}
