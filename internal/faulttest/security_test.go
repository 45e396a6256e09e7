package faulttest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/proctest"
)

// Passwords that must never show: long and unusual, so a hit is never a coincidence.
const (
	redisSecret  = "rEdis-S3cret-7f3a9c"
	pgSecret     = "pG-S3cret-41b8e2"
	readerSecret = "rEader-S3cret-90d1aa"
	wrongSecret  = "wr0ng-S3cret-5e6f7a"
)

// roles creates the app's roles with passwords, and makes PostgreSQL check passwords on TCP
// for everyone but the test's superuser:
//   - voting, the app's user: owns nothing, may read and write the tables;
//   - voting_reader, for result: may read the counts, and its sessions are read-only.
//
// This is what works on managed PostgreSQL too: an administrator runs these statements once,
// and the app never needs the right to create roles.
func (sys *system) roles() (appURL, readerURL string) {
	t := sys.t
	t.Helper()
	for _, sql := range []string{
		"CREATE ROLE voting LOGIN PASSWORD '" + pgSecret + "'",
		"GRANT USAGE ON SCHEMA public TO voting",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO voting",
		"CREATE ROLE voting_reader LOGIN PASSWORD '" + readerSecret + "'",
		"GRANT USAGE ON SCHEMA public TO voting_reader",
		"GRANT SELECT ON vote_counts, tally_trace, worker_status TO voting_reader",
		"ALTER ROLE voting_reader SET default_transaction_read_only = on",
	} {
		sys.pg.query(sql)
	}
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(sys.pg.dir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	sys.pg.query("SELECT pg_reload_conf()")
	u := func(user, pw string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/postgres?sslmode=disable", user, pw, sys.pg.port)
	}
	return u("voting", pgSecret), u("voting_reader", readerSecret)
}

// TestSecretsNeverShown runs every service with passwords in its server URLs (on the command
// line, in the environment, and in *_FILE files), at debug level, through outages and with
// wrong passwords, then looks for the passwords in every log line, every /metrics and /readyz
// answer, and every error answer.
func TestSecretsNeverShown(t *testing.T) {
	requireSetup(t)
	sys := newSystemOn(t, startRedisWithPassword(t, "everysec", redisSecret))
	appURL, readerURL := sys.roles()
	dir := tempDir(t)
	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	votePort, resultPort := proctest.FreePort(t), proctest.FreePort(t)
	debug := "--log-level=debug"
	v := startService(t, "vote", nil, "vote", debug, "--redis-url="+sys.redis.URL, "--vote-addr=127.0.0.1:"+strconv.Itoa(votePort))
	w := startService(t, "worker", []string{
		"VOTING_REDIS_URL_FILE=" + writeFile("redis-url", sys.redis.URL),
		"VOTING_POSTGRES_URL_FILE=" + writeFile("postgres-url", appURL),
	}, "worker", debug, "--claim-timeout=2s")
	r := startService(t, "result", []string{"VOTING_POSTGRES_URL=" + readerURL}, "result", debug,
		"--result-addr=127.0.0.1:"+strconv.Itoa(resultPort), "--poll-interval=1s")
	for _, s := range []*service{v, w, r} {
		s.waitReady(30 * time.Second)
	}
	voteURL := fmt.Sprintf("http://127.0.0.1:%d", votePort)
	resultURL := fmt.Sprintf("http://127.0.0.1:%d", resultPort)

	// What users and scrapers see, collected as we go.
	var seen strings.Builder
	collect := func(what, u string) {
		resp, err := http.Get(u)
		if err != nil {
			fmt.Fprintf(&seen, "%s: %v\n", what, err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&seen, "--- %s %s\n%s\n%s\n", what, resp.Status, resp.Header, b)
	}
	scrape := func(when string) {
		for _, s := range []*service{v, w, r} {
			collect(when+" "+s.name+" /metrics", s.admin+"/metrics")
			collect(when+" "+s.name+" /readyz", s.admin+"/readyz")
		}
		collect(when+" results", resultURL+"/api/results")
	}

	rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: voteURL, Votes: 500, Concurrency: 8,
		Weights: []loadgen.Weight{{Option: "a", Weight: 1}}}, nil)
	if err != nil || rep.Accepted != 500 {
		t.Fatalf("votes with passwords in the URLs: %+v, %v", rep, err)
	}
	sys.drain(time.Minute)
	scrape("running")

	// Outages: errors mentioning the servers are logged and shown in /readyz.
	sys.redis.proc.stop(t, syscall.SIGKILL, 10*time.Second)
	v.waitReadiness(false, 10*time.Second)
	resp, err := http.Post(voteURL+"/api/vote", "application/json", strings.NewReader(`{"vote":"a"}`))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&seen, "--- vote while Redis is down %s\n%s\n", resp.Status, b)
	}
	sys.pg.proc.stop(t, syscall.SIGINT, time.Minute)
	r.waitReadiness(false, 10*time.Second)
	w.waitReadiness(false, 10*time.Second)
	scrape("down")
	sys.redis.start()
	sys.pg.start()
	for _, s := range []*service{v, w, r} {
		s.waitReadiness(true, 30*time.Second)
	}

	// Wrong passwords, and URLs that do not parse, fail with messages that do not repeat them.
	badPG := strings.Replace(appURL, pgSecret, wrongSecret, 1)
	badRedis := strings.Replace(sys.redis.URL, redisSecret, wrongSecret, 1)
	bad := []*service{
		startService(t, "worker-wrong-password", nil, "worker", debug, "--redis-url="+badRedis, "--postgres-url="+badPG),
		startService(t, "result-wrong-password", nil, "result", debug, "--postgres-url="+badPG, "--result-addr=127.0.0.1:0"),
		startService(t, "migrate-unparsable", nil, "migrate", "--postgres-url=postgres://voting:"+wrongSecret+"@[::1:5432/x"),
		startService(t, "vote-unparsable", nil, "vote", debug, "--redis-url=redis://:"+wrongSecret+"@127.0.0.1:notaport/0", "--vote-addr=127.0.0.1:0"),
	}
	time.Sleep(4 * time.Second) // at least one readiness round (2 s) for those that run
	for _, s := range bad {
		if !s.exited() {
			collect(s.name+" /readyz", s.admin+"/readyz")
			collect(s.name+" /metrics", s.admin+"/metrics")
		}
		s.stop(syscall.SIGTERM, 30*time.Second)
	}
	scrape("recovered")
	for _, s := range []*service{v, w, r} {
		if code := s.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM", s.name, code)
		}
	}

	all := seen.String()
	for _, s := range append([]*service{v, w, r}, bad...) {
		all += "\n--- logs of " + s.name + "\n" + s.logs.String()
	}
	for _, secret := range []string{redisSecret, pgSecret, readerSecret, wrongSecret, url.QueryEscape(pgSecret), voterKey} {
		if i := strings.Index(all, secret); i >= 0 {
			t.Errorf("secret %q shown: ...%s...", secret, all[max(0, i-300):min(len(all), i+100)])
		}
	}
	// The collection must have held what the secrets would be next to, or the check proves nothing.
	for _, want := range []string{"voting_http_requests_total", `"dependency":"redis"`, `"dependency":"postgres"`, "127.0.0.1:" + strconv.Itoa(sys.pg.port), "password authentication failed"} {
		if !strings.Contains(all, want) {
			t.Errorf("collected output lacks %q: the test did not see what it should check", want)
		}
	}
	if !t.Failed() {
		t.Logf("searched %d KiB of logs, /metrics, /readyz and error answers: no password found", len(all)/1024)
	}
}

// TestResultRunsReadOnly runs result as a role that may only read the counts, in read-only
// sessions: result works, and that role cannot change a vote.
func TestResultRunsReadOnly(t *testing.T) {
	sys := newSystem(t, "everysec")
	appURL, readerURL := sys.roles()
	_, voteURL := sys.vote()
	startService(t, "worker", nil, "worker", "--redis-url="+sys.redis.URL, "--postgres-url="+appURL, "--claim-timeout=2s").waitReady(30 * time.Second)
	port := proctest.FreePort(t)
	r := startService(t, "result", nil, "result", "--postgres-url="+readerURL, "--result-addr=127.0.0.1:"+strconv.Itoa(port), "--poll-interval=1s")
	r.waitReady(30 * time.Second)
	ws := dialWS(t, fmt.Sprintf("http://127.0.0.1:%d", port))
	if _, err := loadgen.Run(context.Background(), loadgen.Config{URL: voteURL, Votes: 300, Concurrency: 4,
		Weights: []loadgen.Weight{{Option: "a", Weight: 2}, {Option: "b", Weight: 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _, err := ws.state()
		if err != nil {
			t.Fatal(err)
		}
		if got.Total == 300 && got.Options[0].Count == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("result as voting_reader: got %+v, want 200 Cats, 100 Dogs", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, readerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		"UPDATE vote_counts SET count = 0",
		"INSERT INTO votes (id, vote, voted_at) VALUES ('x', 'a', now())",
		"DELETE FROM votes",
		"SELECT id FROM votes LIMIT 1", // who voted for what is not result's business
	} {
		if _, err := conn.Exec(ctx, sql); err == nil {
			t.Errorf("voting_reader may run %q", sql)
		}
	}
}

// TestPublicSurface checks what every browser and client meets: security headers on every
// answer, cross-site POSTs refused while curl-like clients pass, Secure cookies behind a TLS
// proxy, internal errors hidden behind a request id, and the optional rate limit.
func TestPublicSurface(t *testing.T) {
	sys := newSystem(t, "everysec")
	v, voteURL := sys.vote()
	sys.worker()
	_, resultURL := sys.result()

	do := func(method, u, body string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, val := range hdr {
			req.Header.Set(k, val)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	t.Run("security headers", func(t *testing.T) {
		for _, tc := range []struct{ method, url, body string }{
			{"GET", voteURL + "/", ""}, {"POST", voteURL + "/", "vote=a"}, {"POST", voteURL + "/", "vote=zzz"},
			{"GET", voteURL + "/nope", ""}, {"GET", voteURL + "/api/options", ""},
			{"GET", resultURL + "/", ""}, {"GET", resultURL + "/api/results", ""}, {"GET", resultURL + "/ws", ""},
		} {
			resp, _ := do(tc.method, tc.url, tc.body, nil)
			h := resp.Header
			csp := h.Get("Content-Security-Policy")
			if csp == "" || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") ||
				!strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("%s %s (%d): CSP %q", tc.method, tc.url, resp.StatusCode, csp)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" || h.Get("X-Frame-Options") != "DENY" {
				t.Errorf("%s %s (%d): nosniff %q, referrer %q, frame %q", tc.method, tc.url, resp.StatusCode,
					h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"), h.Get("X-Frame-Options"))
			}
		}
	})

	t.Run("cross-origin", func(t *testing.T) {
		sys.drain(30 * time.Second)
		before := sys.storeTotal()
		host := strings.TrimPrefix(voteURL, "http://")
		for _, tc := range []struct {
			name string
			hdr  map[string]string
			want int
		}{
			{"curl or ab: no Origin", nil, 200},
			{"same origin", map[string]string{"Origin": voteURL, "Sec-Fetch-Site": "same-origin"}, 200},
			{"same origin, old browser", map[string]string{"Origin": voteURL}, 200},
			{"user typed it", map[string]string{"Sec-Fetch-Site": "none"}, 200},
			{"cross-site", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
			{"same-site subdomain", map[string]string{"Origin": "https://a.example", "Sec-Fetch-Site": "same-site"}, 403},
			{"old browser, other origin", map[string]string{"Origin": "https://evil.example"}, 403},
			{"null origin (sandboxed frame)", map[string]string{"Origin": "null"}, 403},
			{"other port", map[string]string{"Origin": "http://" + strings.Split(host, ":")[0] + ":1"}, 403},
		} {
			for _, path := range []string{"/", "/api/vote"} {
				body := "vote=a"
				if path == "/api/vote" {
					body = `{"vote":"a"}`
				}
				resp, b := do("POST", voteURL+path, body, tc.hdr)
				want := tc.want
				if want == 200 && path == "/api/vote" {
					want = 202
				}
				if resp.StatusCode != want {
					t.Errorf("%s, POST %s: got %d %q, want %d", tc.name, path, resp.StatusCode, b, want)
				}
			}
		}
		sys.drain(30 * time.Second) // the 8 accepted ones are recorded; none of the others was queued
		if n := sys.storeTotal() - before; n != 8 {
			t.Errorf("votes stored: %d, want the 8 same-origin or Origin-less ones", n)
		}
	})

	t.Run("cross-origin websocket", func(t *testing.T) {
		// Another site's page may not read the results stream in a visitor's browser.
		for origin, want := range map[string]int{"https://evil.example": 403, resultURL: 101, "": 101} {
			req, _ := http.NewRequest("GET", resultURL+"/ws", nil)
			for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
				req.Header.Set(k, v)
			}
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // an accepted socket stays open until closed
			if resp.StatusCode != want {
				t.Errorf("WebSocket handshake with Origin %q: got %d, want %d", origin, resp.StatusCode, want)
			}
		}
	})

	t.Run("secure cookies", func(t *testing.T) {
		// A new voter (no cookie sent) is always given the voter cookie; without one the
		// checks below would have nothing to check.
		resp, _ := do("POST", voteURL+"/", "vote=a", map[string]string{"X-Forwarded-Proto": "https"})
		if len(resp.Cookies()) == 0 {
			t.Errorf("behind a TLS proxy: a new voter's vote set no cookie")
		}
		for _, c := range resp.Cookies() {
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("behind a TLS proxy: cookie %s Secure %v HttpOnly %v SameSite %v", c.Name, c.Secure, c.HttpOnly, c.SameSite)
			}
		}
		resp, _ = do("POST", voteURL+"/", "vote=a", nil)
		if len(resp.Cookies()) == 0 {
			t.Errorf("plain HTTP: a new voter's vote set no cookie")
		}
		for _, c := range resp.Cookies() {
			if c.Secure {
				t.Errorf("plain HTTP: cookie %s is Secure, so the browser would never send it back", c.Name)
			}
		}
	})

	t.Run("internal errors", func(t *testing.T) {
		sys.redis.proc.stop(t, syscall.SIGKILL, 10*time.Second)
		defer sys.redis.start()
		resp, body := do("POST", voteURL+"/api/vote", `{"vote":"a"}`, nil)
		id := resp.Header.Get("X-Request-Id")
		if resp.StatusCode != http.StatusServiceUnavailable || id == "" || !strings.Contains(body, id) {
			t.Fatalf("vote with Redis down: got %d %q (request id %q), want 503 naming the request id", resp.StatusCode, body, id)
		}
		if regexp.MustCompile(`(?i)dial|tcp|redis|127\.0\.0\.1|refused|:\d{4,5}`).MatchString(body) {
			t.Errorf("the answer shows internal details: %q", body)
		}
		// The process's log reaches the test through a pipe, maybe after the answer did.
		var logged bool
		for deadline := time.Now().Add(5 * time.Second); !logged && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, line := range strings.Split(v.logs.String(), "\n") {
				// The cause is Redis's: "connection refused" once the pool redials, or a
				// reset or EOF on a connection Redis had open when it died.
				if strings.Contains(line, id) && strings.Contains(line, "redisqueue: publish") {
					logged = true
				}
			}
		}
		if !logged {
			t.Errorf("no log line with request id %s and the real error:\n%s", id, tail(v.logs.String(), 10))
		}
		t.Logf("the user sees %q; the log line with that id has the cause", strings.TrimSpace(body))
	})

	t.Run("rate limit", func(t *testing.T) {
		// Trusted: loopback, where the test's "proxy" sits. Votes name clients by
		// X-Forwarded-For; without a trusted proxy the header is ignored.
		_, limited := sys.vote("--rate-limit=1", "--rate-burst=5", "--trusted-proxies=127.0.0.1/32")
		_, untrusted := sys.vote("--rate-limit=1", "--rate-burst=5")
		count := func(u string, hdr map[string]string, n int) map[int]int {
			got := map[int]int{}
			for range n {
				resp, _ := do("POST", u+"/", "vote=a", hdr)
				got[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
			}
			return got
		}
		alice := map[string]string{"X-Forwarded-For": "203.0.113.7"}
		bob := map[string]string{"X-Forwarded-For": "198.51.100.9"}
		start := time.Now()
		one := count(limited, alice, 20)
		// 5 at once, then 1 a second: a slow machine may earn a few more while it sends.
		if most := 5 + int(time.Since(start).Seconds()+1); one[200] < 5 || one[200] > most {
			t.Errorf("one client, 20 quick votes, burst 5 at 1/s: got %v, want 5 to %d accepted and the rest 429", one, most)
		}
		if got := count(limited, bob, 3); got[200] != 3 {
			t.Errorf("another client behind the same proxy: got %v, want all 3 accepted", got)
		}
		// From an untrusted peer, X-Forwarded-For is the client's own claim: ignored.
		start = time.Now()
		forged := count(untrusted, map[string]string{"X-Forwarded-For": "192.0.2.1"}, 6)
		forged2 := count(untrusted, map[string]string{"X-Forwarded-For": "192.0.2.2"}, 6)
		if forged[200]+forged2[200] > 5+int(time.Since(start).Seconds()+1) {
			t.Errorf("forged X-Forwarded-For from an untrusted peer: got %v and %v, want one bucket of about 5", forged, forged2)
		}
		if resp, _ := do("GET", limited+"/", "", alice); resp.StatusCode != http.StatusOK {
			t.Errorf("the page past the limit: got %d, want 200 (only votes are limited)", resp.StatusCode)
		}
		t.Logf("rate limit 1/s, burst 5: 20 quick votes from one client behind a trusted proxy: %v; two forged X-Forwarded-For from an untrusted peer, 6 each: %v and %v", one, forged, forged2)
	})
}
