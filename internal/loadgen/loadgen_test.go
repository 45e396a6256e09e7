package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeApp is a vote service and a result service in one: every form POST is a new voter
// and raises the total, which /ws pushes to every client, as the real pair does once the
// worker has recorded the vote.
type fakeApp struct {
	total  atomic.Int64
	mu     sync.Mutex
	change *sync.Cond
	voters atomic.Int64
}

func newFakeApp(t *testing.T, initial int64) (*httptest.Server, *fakeApp) {
	a := &fakeApp{}
	a.total.Store(initial)
	a.change = sync.NewCond(&a.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("vote") == "" {
			http.Error(w, "no vote", http.StatusBadRequest)
			return
		}
		id := r.Header.Get("Cookie")
		if id == "" {
			id = fmt.Sprint("v", a.voters.Add(1))
			http.SetCookie(w, &http.Cookie{Name: "voter_id", Value: id, Path: "/", HttpOnly: true})
		}
		a.mu.Lock()
		a.total.Add(1)
		a.change.Broadcast()
		a.mu.Unlock()
		// A page as the vote service answers (over 2 KiB without a length: chunked) for a,
		// a short one (with a Content-Length) for b, so both framings are read.
		if r.PostForm.Get("vote") == "a" {
			_, _ = w.Write([]byte(strings.Repeat("<p>voted</p>", 500)))
		} else {
			_, _ = w.Write([]byte("voted"))
		}
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		var gone atomic.Bool
		go func() { // read (answering nothing: the generator only pongs) until the client goes
			for {
				if _, _, err := wsutil.ReadClientData(conn); err != nil {
					gone.Store(true)
					a.mu.Lock()
					a.change.Broadcast()
					a.mu.Unlock()
					return
				}
			}
		}()
		// A ping first: the generator must answer it and go on.
		if err := wsutil.WriteServerMessage(conn, ws.OpPing, []byte("p")); err != nil {
			return
		}
		sent := int64(-1)
		for {
			a.mu.Lock()
			for a.total.Load() == sent && !gone.Load() {
				a.change.Wait()
			}
			a.mu.Unlock()
			if gone.Load() {
				return
			}
			sent = a.total.Load()
			msg := fmt.Sprintf(`{"options":[{"id":"a","label":"\"total\": 1","count":%d}],"total":%d}`, sent, sent)
			if err := wsutil.WriteServerText(conn, []byte(msg)); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, a
}

func TestRunSeedShares(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) { testSeedShares(t, raw) })
	}
}

func testSeedShares(t *testing.T, raw bool) {
	srv, _ := newFakeApp(t, 0)
	rep, err := Run(context.Background(), Config{URL: srv.URL, Votes: 3000, Concurrency: 16, Raw: raw,
		Weights: []Weight{{"a", 2}, {"b", 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for voter := range rep.Final {
		if !strings.HasPrefix(voter, "v") {
			t.Fatalf("voter id %q: want the id from the service's cookie", voter)
		}
	}
	if rep.Accepted != 3000 || rep.AcceptedByOption["a"] != 2000 || rep.AcceptedByOption["b"] != 1000 || rep.Failed != 0 {
		t.Fatalf("got %d accepted (%v), %d failed; want 3000: 2000 a, 1000 b", rep.Accepted, rep.AcceptedByOption, rep.Failed)
	}
	if len(rep.Final) != 3000 || rep.P50 <= 0 || rep.P50 > rep.P99 || rep.P99 > rep.Max {
		t.Fatalf("final voters %d, latencies p50 %v p99 %v max %v; want 3000 voters and ordered percentiles", len(rep.Final), rep.P50, rep.P99, rep.Max)
	}
}

func TestRunPush(t *testing.T) {
	const clients, votes = 8, 400
	srv, _ := newFakeApp(t, 1000) // votes from before the run are not counted
	rep, err := Run(context.Background(), Config{URL: srv.URL, Votes: votes, Concurrency: 8, Rate: 2000,
		Weights: []Weight{{"a", 1}}, WSURL: srv.URL, WSClients: clients}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Push
	if p == nil {
		t.Fatal("no push report")
	}
	if p.Clients != clients || p.GotFinal != clients || p.BaseTotal != 1000 || p.Final != 1000+votes {
		t.Fatalf("push %+v: want %d clients all with the final total %d from 1000", p, clients, 1000+votes)
	}
	if p.Samples != clients*votes || p.Missed != 0 {
		t.Fatalf("push: %d samples, %d missed; want %d, 0", p.Samples, p.Missed, clients*votes)
	}
	if p.P50 > p.P95 || p.P95 > p.P99 || p.P99 > p.Max+pushBucket || p.Max > 5*time.Second {
		t.Fatalf("push latencies p50 %v p95 %v p99 %v max %v: want ordered and bounded", p.P50, p.P95, p.P99, p.Max)
	}
}

func TestRunPushRefusesReuse(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Votes: 1, Concurrency: 1, Reuse: 0.5,
		Weights: []Weight{{"a", 1}}, WSURL: "http://127.0.0.1:1", WSClients: 1}, nil)
	if err == nil {
		t.Fatal("push latency with returning voters: want an error, the totals would not say which vote was seen")
	}
}

// TestPushReport checks the latency arithmetic on known times: each (vote, client) pair is
// the first message whose total counts the vote, minus the vote's 2xx.
func TestPushReport(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acks := []time.Time{at(0), at(10), at(20)} // totals 101, 102, 103
	w := &watchers{ws: []*watcher{
		{msgs: []pushMsg{{at(5), 101}, {at(30), 103}}},  // 5, 20, 10
		{msgs: []pushMsg{{at(15), 102}, {at(16), 102}}}, // 15, 5; never sees 103
		{msgs: []pushMsg{{at(19), 103}}},                // 19, 9, 0 (seen before its 2xx)
	}}
	r := w.report(100, 103, acks)
	// Sorted samples: 0 5 5 9 10 15 19 20 (ms).
	if r.Samples != 8 || r.Missed != 1 || r.GotFinal != 2 || r.Messages != 5 {
		t.Fatalf("samples %d, missed %d, got final %d, messages %d; want 8, 1, 2, 5", r.Samples, r.Missed, r.GotFinal, r.Messages)
	}
	if r.Max != 20*time.Millisecond {
		t.Errorf("max %v, want 20ms", r.Max)
	}
	// The 4th of 8 samples is the median: 9 ms, reported as its bucket's upper bound.
	if want := 9*time.Millisecond + pushBucket; r.P50 != want {
		t.Errorf("p50 %v, want %v", r.P50, want)
	}
	if want := 20*time.Millisecond + pushBucket; r.P95 != want || r.P99 != want {
		t.Errorf("p95 %v p99 %v, want %v", r.P95, r.P99, want)
	}
	if r.LastFinal != 10*time.Millisecond {
		t.Errorf("last client with the final total %v after the last 2xx, want 10ms", r.LastFinal)
	}
}

func TestWSURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://result:8081":      "ws://result:8081/ws",
		"https://example.org/":    "wss://example.org/ws",
		"ws://127.0.0.1:8081/ws":  "ws://127.0.0.1:8081/ws",
		"http://host/prefix/path": "ws://host/prefix/path/ws",
	} {
		if got, err := wsURL(in); err != nil || got != want {
			t.Errorf("wsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := wsURL("ftp://x"); err == nil {
		t.Error("wsURL(ftp://x): want an error")
	}
}

// TestRunRawReuse checks that the raw client sends the voter's cookie back: returning voters
// get no new id.
func TestRunRawReuse(t *testing.T) {
	srv, app := newFakeApp(t, 0)
	rep, err := Run(context.Background(), Config{URL: srv.URL, Votes: 2000, Concurrency: 4, Raw: true, Reuse: 0.5,
		SerialVoters: true, Weights: []Weight{{"a", 1}, {"b", 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 2000 || len(rep.Final) >= 1500 || len(rep.Final) < 500 {
		t.Fatalf("%d accepted, %d voters; want 2000 votes from about 1000 voters", rep.Accepted, len(rep.Final))
	}
	if n := app.voters.Load(); n != int64(len(rep.Final)) {
		t.Fatalf("the service made %d voter ids for %d voters: returning voters did not send their cookie", n, len(rep.Final))
	}
}

func TestRunRawRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there now
	rep, err := Run(context.Background(), Config{URL: srv.URL, Votes: 3, Concurrency: 1, Raw: true, Weights: []Weight{{"a", 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 3 || rep.ByStatus["error"] != 3 || rep.FirstError == "" {
		t.Fatalf("report %+v: want 3 failed with an error", rep)
	}
	if rep.UnsureNew != 0 {
		t.Fatalf("%d refused votes counted as unsure: nothing reached the service", rep.UnsureNew)
	}
}

// TestRunRate checks that the schedule holds votes back: the last of 200 votes at 1000/s is
// not sent before 199 ms. (Only the lower bound is checked; a busy machine may be slower.)
func TestRunRate(t *testing.T) {
	srv, _ := newFakeApp(t, 0)
	rep, err := Run(context.Background(), Config{URL: srv.URL, Votes: 200, Concurrency: 8, Rate: 1000, Raw: true,
		Weights: []Weight{{"a", 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 200 || rep.Duration < 199*time.Millisecond {
		t.Fatalf("%d accepted in %v; want 200 taking at least 199ms", rep.Accepted, rep.Duration)
	}
}

func TestMessageTotal(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want int64
		ok   bool
	}{
		{`{"options":[],"total":0}`, 0, true},
		{`{"options":[{"id":"a","label":"\"total\":7","count":3}],"total":1234}`, 1234, true},
		{`{"total": 42}`, 42, true},
		{`{"options":[]}`, 0, false},
		{`{"total":"x"}`, 0, false},
	} {
		got, ok := messageTotal([]byte(tc.msg))
		if got != tc.want || ok != tc.ok {
			t.Errorf("messageTotal(%s) = %d, %v; want %d, %v", tc.msg, got, ok, tc.want, tc.ok)
		}
	}
}

// TestConnectTo: with ConnectTo every client (standard, raw and WebSocket) connects there and
// sends the URLs' host names, as a Gateway's routes need.
func TestConnectTo(t *testing.T) {
	srv, _ := newFakeApp(t, 0)
	var hosts sync.Map
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.Host, true)
		inner.ServeHTTP(w, r)
	})
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, raw := range []bool{false, true} {
		rep, err := Run(context.Background(), Config{URL: "http://vote.example.test", Votes: 20, Concurrency: 2, Raw: raw,
			Weights: []Weight{{"a", 1}}, WSURL: "http://result.example.test", WSClients: 2, ConnectTo: addr}, nil)
		if err != nil {
			t.Fatalf("raw=%v: %v", raw, err)
		}
		if rep.Accepted != 20 || rep.Push == nil || rep.Push.GotFinal != 2 {
			t.Fatalf("raw=%v: %d accepted, push %+v; want 20 and both clients with the final total", raw, rep.Accepted, rep.Push)
		}
	}
	for _, h := range []string{"vote.example.test", "result.example.test"} {
		if _, ok := hosts.Load(h); !ok {
			t.Errorf("no request with Host %s", h)
		}
	}
}

// TestRunRefused: a vote answered 4xx is refused, never unsure; the report names, per voter
// the service told an id, the refused votes after its last accepted one (what a stored vote
// of that voter must not be), and forgets those an accepted vote came after.
func TestRunRefused(t *testing.T) {
	var (
		mu     sync.Mutex
		n      int
		events = map[string][]string{} // voter -> "a", "b" accepted, "!zzz" refused, in order
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		defer mu.Unlock()
		id := ""
		if c, err := r.Cookie("voter_id"); err == nil {
			id = c.Value
		} else {
			n++
			id = fmt.Sprint("v", n)
		}
		// The id comes with every answer, a refusal's too, as the vote service gives it.
		http.SetCookie(w, &http.Cookie{Name: "voter_id", Value: id})
		if v := r.PostForm.Get("vote"); v == "zzz" {
			events[id] = append(events[id], "!"+v)
			http.Error(w, "unknown option", http.StatusBadRequest)
			return
		}
		events[id] = append(events[id], r.PostForm.Get("vote"))
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{URL: srv.URL, Votes: 600, Concurrency: 8, Reuse: 0.6, SerialVoters: true,
		Weights: []Weight{{"a", 1}, {"b", 1}, {"zzz", 1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 400 || rep.ByStatus["400"] != 200 || rep.UnsureNew != 0 || len(rep.Unsure) != 0 {
		t.Fatalf("report: %d accepted, answers %v, unsure %d new and %v; want 400 accepted, 200 refused, none unsure", rep.Accepted, rep.ByStatus, rep.UnsureNew, rep.Unsure)
	}
	withRefusals := 0
	for voter, evs := range events {
		var want []string
		for _, e := range evs {
			if o, ok := strings.CutPrefix(e, "!"); ok {
				want = append(want, o)
			} else {
				want = nil // an accepted vote: the refusals before it no longer matter
			}
		}
		if fmt.Sprint(rep.Refused[voter]) != fmt.Sprint(want) {
			t.Errorf("voter %s (%v): refused %v, want %v", voter, evs, rep.Refused[voter], want)
		}
		if len(want) > 0 {
			withRefusals++
		}
	}
	if withRefusals == 0 || len(rep.Refused) != withRefusals {
		t.Errorf("%d voters with refusals in the report, %d at the service: want the same, more than 0", len(rep.Refused), withRefusals)
	}
}
