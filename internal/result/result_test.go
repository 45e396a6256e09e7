package result_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/proctest"
	"github.com/votingapp/voting/internal/result"
	"github.com/votingapp/voting/internal/sqlitestore"
	"github.com/votingapp/voting/internal/voting"
)

// newService returns a result service for options on a SQLite store of its own, and the
// registry of its metrics. Its poll interval is an hour: any update within a test comes from
// the store's signal.
func newService(t testing.TB, options string) (*result.Service, *sqlitestore.Store, *prometheus.Registry) {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts, err := voting.ParseOptions(options)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc, err := result.New(result.Config{Options: opts, PollInterval: time.Hour, Instance: "here"}, st, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, reg
}

func TestPushOnCommit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, st, _ := newService(t, "a=Cats,b=Dogs,c=Birds")
	go svc.Run(ctx)
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	c := proctest.MustDialWebSocket(t, srv.URL+"/ws")
	read := func() voting.Result {
		b, err := c.Read(5 * time.Second)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var r voting.Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := read(); r.Total != 0 || len(r.Options) != 3 || r.Options[2].Label != "Birds" {
		t.Fatalf("snapshot on connect: %+v", r)
	}
	page := get(t, srv.URL+"/")
	if !strings.Contains(page, "No votes yet") || strings.Contains(page, "50.0%") {
		t.Errorf("page before any vote should say No votes yet, not a fake 50/50")
	}

	for i, opt := range []string{"a", "b", "b"} {
		start := time.Now()
		if err := st.Record(ctx, []voting.Vote{{VoterID: "v" + opt + string(rune('0'+i)), Option: opt, At: voting.Now()}}); err != nil {
			t.Fatal(err)
		}
		r := read()
		if r.Total != int64(i+1) {
			t.Fatalf("after vote %d: got %+v", i+1, r)
		}
		t.Logf("commit to push: %s", time.Since(start))
	}
	var api struct {
		voting.Result
		Instance string
	}
	if err := json.Unmarshal([]byte(get(t, srv.URL+"/api/results")), &api); err != nil {
		t.Fatal(err)
	}
	if api.Total != 3 || api.Options[1].Count != 2 || api.Options[1].Percent != 66.67 || api.Options[0].Percent != 33.33 {
		t.Fatalf("/api/results: %+v", api)
	}
	// The replica that answered, so that a page (or a check) behind a load balancer can tell.
	if api.Instance != "here" {
		t.Errorf("/api/results names instance %q, want %q", api.Instance, "here")
	}
	if page := get(t, srv.URL+"/"); !strings.Contains(page, "66.7%") || !strings.Contains(page, ">3<") {
		t.Errorf("page does not show the numbers:\n%s", page)
	}
}

// TestGoingAwayOnStop: when Run returns, every WebSocket client has been told the server is
// going away (1001), and new ones are told so at once.
func TestGoingAwayOnStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, _, _ := newService(t, "a=Cats,b=Dogs")
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		svc.Run(runCtx)
		close(ran)
	}()
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	var cs []*proctest.WebSocket
	for range 3 {
		c := proctest.MustDialWebSocket(t, srv.URL+"/ws")
		if _, err := c.Read(5 * time.Second); err != nil {
			t.Fatalf("snapshot on connect: %v", err)
		}
		cs = append(cs, c)
	}
	stop()
	<-ran
	for i, c := range append(cs, proctest.MustDialWebSocket(t, srv.URL+"/ws")) {
		if _, err := c.Read(5 * time.Second); proctest.CloseCode(err) != 1001 {
			t.Errorf("client %d after Run returned: %v, want a going-away close (1001)", i, err)
		}
	}
}

// TestResultsUnavailableBeforeFirstTally: before the first read of the tally there is
// nothing to show yet, which is a 503 a client may retry, not an internal error.
func TestResultsUnavailableBeforeFirstTally(t *testing.T) {
	svc, _, _ := newService(t, "a=Cats,b=Dogs")
	srv := httptest.NewServer(svc.Handler()) // Run is not running: no tally is read
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/results")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("/api/results before the first tally: %s, Retry-After %q; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
