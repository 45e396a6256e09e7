package vote_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
)

// testKey is the voter key of the tests' services unless they set their own.
const testKey = "test-voter-key-0123456789abcdef0123456789"

// newService returns a vote service for options (as --options reads them) and cfg, which
// publishes to pub. Without VoterKeys in cfg it signs with testKey.
func newService(tb testing.TB, options string, cfg vote.Config, pub voting.Publisher) *vote.Service {
	tb.Helper()
	opts, err := voting.ParseOptions(options)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Options = opts
	if cfg.VoterKeys == nil {
		cfg.VoterKeys = [][]byte{[]byte(testKey)}
	}
	svc, err := vote.New(cfg, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

func newTestService(t *testing.T) (*httptest.Server, *memqueue.Queue) {
	t.Helper()
	q := memqueue.New(memqueue.Config{})
	svc := newService(t, "a=Cats,b=Dogs", vote.Config{Instance: "test-host"}, q)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return srv, q
}

// queued returns what is in the queue now.
func queued(t *testing.T, q *memqueue.Queue) []voting.Vote {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := q.Consumer("test")
	defer c.Close()
	ds, _ := c.Receive(ctx, 100)
	var vs []voting.Vote
	for _, d := range ds {
		vs = append(vs, d.Vote)
	}
	return vs
}

func TestFormVote(t *testing.T) {
	srv, q := newTestService(t)
	// Exactly what the original's seed sends: ab -p posta -T application/x-www-form-urlencoded.
	resp, err := http.Post(srv.URL+"/", "application/x-www-form-urlencoded", strings.NewReader("vote=b"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s, want 200", resp.Status)
	}
	var voter *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "voter_id" {
			voter = c
		}
	}
	if voter == nil || !voter.HttpOnly || voter.SameSite != http.SameSiteLaxMode || voter.MaxAge < 30*24*3600 {
		t.Fatalf("voter_id cookie: got %+v, want HttpOnly, SameSite=Lax, long-lived", voter)
	}
	id, stamp, ok := verifyCookie(testKey, voter.Value)
	if !ok || len(id) != 32 {
		t.Fatalf("voter_id cookie %q: want 128 random bits in hex, a stamp and a valid signature", voter.Value)
	}
	if !strings.Contains(string(body), `id="option-b" class="option chosen"`) {
		t.Errorf("page after voting does not mark Dogs as chosen:\n%s", body)
	}
	got := queued(t, q)
	if len(got) != 1 || got[0].Option != "b" || got[0].VoterID != id || got[0].At.UnixMicro() != stamp {
		t.Fatalf("queued %+v, want one vote for b by %s at the cookie's stamp %d", got, id, stamp)
	}

	// A reload shows the choice: the browser sends its cookies back.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `id="option-b" class="option chosen"`) || !strings.Contains(string(body), "test-host") {
		t.Errorf("reloaded page does not mark the choice or the instance:\n%s", body)
	}
}

func TestVoterKeepsTheirID(t *testing.T) {
	srv, q := newTestService(t)
	const id = "0123456789abcdef0123456789abcdef"
	cookie := signCookie(testKey, id, 0)
	for _, option := range []string{"a", "b"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/vote", strings.NewReader(`{"vote":"`+option+`"}`))
		req.AddCookie(&http.Cookie{Name: "voter_id", Value: cookie})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Vote, VoterID string }
		_ = json.NewDecoder(resp.Body).Decode(&struct {
			Vote    *string `json:"vote"`
			VoterID *string `json:"voter_id"`
		}{&got.Vote, &got.VoterID})
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || got.Vote != option || got.VoterID != id {
			t.Fatalf("POST /api/vote: got %s %+v, want 202 with the vote and the cookie's voter id", resp.Status, got)
		}
		if c := cookieOf(resp, "voter_id"); c == nil || !strings.HasPrefix(c.Value, id+".") {
			t.Fatalf("POST /api/vote: voter cookie %+v, want the same voter with the new stamp", c)
		} else {
			cookie = c.Value
		}
	}
	got := queued(t, q)
	if len(got) != 2 || got[0].VoterID != got[1].VoterID || !got[1].Newer(got[0]) {
		t.Fatalf("queued %+v, want two votes of one voter, the second newer", got)
	}
}

// TestBadVotes: each bad request gets a 4xx with a clear message, and nothing is queued.
func TestBadVotes(t *testing.T) {
	srv, q := newTestService(t)
	tests := []struct {
		name, path, ctype, body string
		status                  int
		want                    string
	}{
		{"unknown option", "/", "application/x-www-form-urlencoded", "vote=c", 400, "unknown or invalid option"},
		{"missing field", "/", "application/x-www-form-urlencoded", "choice=a", 400, "missing vote"},
		{"empty body", "/", "application/x-www-form-urlencoded", "", 400, "missing vote"},
		{"form too large", "/", "application/x-www-form-urlencoded", "vote=a&pad=" + strings.Repeat("x", 2000), 413, "too large"},
		{"bad form encoding", "/", "application/x-www-form-urlencoded", "vote=%zz", 400, "bad request"},
		{"json unknown option", "/api/vote", "application/json", `{"vote":"c"}`, 400, "unknown or invalid option"},
		{"json missing vote", "/api/vote", "application/json", `{}`, 400, "missing vote"},
		{"json not json", "/api/vote", "application/json", `vote=a`, 400, "bad request"},
		{"json unknown field", "/api/vote", "application/json", `{"vote":"a","voter_id":"someone-else"}`, 400, "unknown field"},
		{"json two objects", "/api/vote", "application/json", `{"vote":"a"}{"vote":"b"}`, 400, "bad request"},
		{"json too large", "/api/vote", "application/json", `{"vote":"` + strings.Repeat("a", 2000) + `"}`, 413, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+tt.path, tt.ctype, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
				t.Errorf("got %s %q, want %d with %q", resp.Status, body, tt.status, tt.want)
			}
		})
	}
	if got := queued(t, q); len(got) != 0 {
		t.Fatalf("bad votes queued %+v, want nothing", got)
	}
	resp, err := http.PostForm(srv.URL+"/", url.Values{"vote": {"a"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(queued(t, q)) != 1 {
		t.Fatalf("a good vote after the bad ones: got %s", resp.Status)
	}
}

func TestAssetsAreEmbeddedAndCached(t *testing.T) {
	srv, _ := newTestService(t)
	page := getBody(t, srv.URL+"/")
	for _, asset := range []string{"vote.css", "vote.js"} {
		i := strings.Index(page, "/static/"+asset+"?v=")
		if i < 0 {
			t.Fatalf("page does not link %s with a version", asset)
		}
		link := page[i : i+strings.IndexByte(page[i:], '"')]
		resp, err := http.Get(srv.URL + link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Errorf("%s: got %s, Cache-Control %q; want 200, immutable", link, resp.Status, resp.Header.Get("Cache-Control"))
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "<script>") {
		t.Errorf("page refers to another site or has inline script")
	}
}

func getBody(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPageEscapesOptionLabels: labels come from configuration and may hold any character;
// the page shows them as text wherever they appear.
func TestPageEscapesOptionLabels(t *testing.T) {
	svc := newService(t, `a=<i>Cats</i> & co,b="Dogs"`, vote.Config{Instance: "<host>"}, memqueue.New(memqueue.Config{}))
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/", "application/x-www-form-urlencoded", strings.NewReader("vote=a"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{
		`<title>&lt;i&gt;Cats&lt;/i&gt; &amp; co vs &#34;Dogs&#34; — vote</title>`,
		`<span class="label">&lt;i&gt;Cats&lt;/i&gt; &amp; co</span>`,
		`You voted for <strong>&lt;i&gt;Cats&lt;/i&gt; &amp; co</strong>`,
		`<code id="instance">&lt;host&gt;</code>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<i>") {
		t.Errorf("a label became markup:\n%s", page)
	}
}
