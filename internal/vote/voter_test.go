package vote_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
)

// signCookie is the voter cookie for id and stamp under key, made the way the format is
// documented (voter.go), independently of the service's code.
func signCookie(key, id string, stamp int64) string {
	s := strconv.FormatInt(stamp, 10)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("voting voter_id v1\x00" + id + "." + s))
	return id + "." + s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// verifyCookie returns the id and stamp of a voter cookie that key signed.
func verifyCookie(key, value string) (string, int64, bool) {
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		return "", 0, false
	}
	stamp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || signCookie(key, parts[0], stamp) != value {
		return "", 0, false
	}
	return parts[0], stamp, true
}

func cookieOf(resp *http.Response, name string) *http.Cookie {
	var found *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == name {
			if found != nil {
				return &http.Cookie{Name: name, Value: "(set twice)"}
			}
			found = c
		}
	}
	return found
}

// failing is a Publisher whose queue is down.
type failing struct{}

func (failing) Publish(context.Context, voting.Vote) error {
	return errors.New("connection refused")
}

// serveWith runs one request through h with the Cookie header given ("" for none).
func serveWith(h http.Handler, method, path, ctype, body, cookie string) *http.Response {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

// TestNewVisitorGetsIDOnFirstAnswer: the first answer of any kind gives a new visitor its
// voter id (the page, a refused vote, a 503), so its next request, or a second one sent
// before the first was answered, is the same voter. The original does the same.
func TestNewVisitorGetsIDOnFirstAnswer(t *testing.T) {
	up := newService(t, "a=Cats,b=Dogs", vote.Config{}, &recorder{}).Handler()
	down := newService(t, "a=Cats,b=Dogs", vote.Config{}, failing{}).Handler()
	for _, tt := range []struct {
		name                    string
		h                       http.Handler
		method, path, ctype, in string
		status                  int
	}{
		{"page", up, "GET", "/", "", "", 200},
		{"unknown option", up, "POST", "/", "application/x-www-form-urlencoded", "vote=c", 400},
		{"missing vote", up, "POST", "/api/vote", "application/json", "{}", 400},
		{"too large", up, "POST", "/", "application/x-www-form-urlencoded", "vote=a&x=" + strings.Repeat("x", 2000), 413},
		{"queue down, form", down, "POST", "/", "application/x-www-form-urlencoded", "vote=a", 503},
		{"queue down, JSON", down, "POST", "/api/vote", "application/json", `{"vote":"a"}`, 503},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := serveWith(tt.h, tt.method, tt.path, tt.ctype, tt.in, "")
			c := cookieOf(resp, "voter_id")
			if resp.StatusCode != tt.status || c == nil {
				t.Fatalf("got %d with voter cookie %+v, want %d with a voter cookie", resp.StatusCode, c, tt.status)
			}
			if id, stamp, ok := verifyCookie(testKey, c.Value); !ok || len(id) != 32 || stamp != 0 {
				t.Fatalf("voter cookie %q: want a signed new id with no vote yet", c.Value)
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge <= 0 || c.Path != "/" {
				t.Errorf("voter cookie %+v: want HttpOnly, SameSite=Lax, Path=/, long-lived", c)
			}
			if got := cookieOf(resp, "vote"); got != nil {
				t.Errorf("no vote was taken, yet the choice cookie was set: %+v", got)
			}
		})
	}

	// A browser that holds the page's cookie and sends two votes at once (a double click,
	// a retry while the first is still in flight) is one voter.
	rec := &recorder{}
	h := newService(t, "a=Cats,b=Dogs", vote.Config{}, rec).Handler()
	page := cookieOf(serveWith(h, "GET", "/", "", "", ""), "voter_id")
	id, _, _ := verifyCookie(testKey, page.Value)
	var wg sync.WaitGroup
	for _, path := range []string{"/", "/", "/api/vote"} {
		wg.Go(func() {
			ctype, body := "application/x-www-form-urlencoded", "vote=a"
			if path == "/api/vote" {
				ctype, body = "application/json", `{"vote":"a"}`
			}
			serveWith(h, "POST", path, ctype, body, "voter_id="+page.Value)
		})
	}
	wg.Wait()
	votes := rec.take()
	if len(votes) != 3 {
		t.Fatalf("queued %d votes, want 3", len(votes))
	}
	for _, v := range votes {
		if v.VoterID != id {
			t.Errorf("a vote sent with the page's cookie was queued as voter %s, want %s", v.VoterID, id)
		}
	}

	// A browser that already has a valid cookie is not sent it again by the page.
	if c := cookieOf(serveWith(h, "GET", "/", "", "", "voter_id="+page.Value), "voter_id"); c != nil {
		t.Errorf("page sent a voter that has its cookie a new one: %+v", c)
	}
}

// TestForgedVoterIDIsANewVoter: only a cookie the service signed names a voter. A made-up,
// altered or foreign one (and the unsigned ids of earlier versions) gets a new id, and the
// vote is counted under that, never under the id the cookie claims.
func TestForgedVoterIDIsANewVoter(t *testing.T) {
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	opts, _ := voting.ParseOptions("a=Cats,b=Dogs")
	svc, err := vote.New(vote.Config{Options: opts, VoterKeys: [][]byte{[]byte(testKey)}}, rec, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	h := svc.Handler()
	const victim = "0123456789abcdef0123456789abcdef"
	good := signCookie(testKey, victim, 1700000000000000)
	id, stamp, mac := splitCookie(good)
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tt := range []struct{ name, cookie string }{
		{"unsigned id (earlier versions)", victim},
		{"short made-up id", "a"},
		{"id changed", "f" + id[1:] + "." + stamp + "." + mac},
		{"stamp changed", id + "." + stamp[:len(stamp)-1] + "9." + mac},
		{"stamp far ahead", id + ".9" + stamp + "." + mac},
		{"mac changed", id + "." + stamp + "." + flip(mac, 3)},
		{"mac cut short", id + "." + stamp + "." + mac[:20]},
		{"mac's unused last bits set", id + "." + stamp + "." + mac[:21] + string(mac[21]+1)},
		{"no mac", id + "." + stamp},
		{"another key", signCookie("someone-elses-key-0123456789abcdefghijk", victim, 5)},
		{"upper-case id", strings.ToUpper(id) + "." + stamp + "." + mac},
		{"extra part", good + ".x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := serveWith(h, "POST", "/api/vote", "application/json", `{"vote":"b"}`, "voter_id="+tt.cookie)
			body, _ := io.ReadAll(resp.Body)
			votes := rec.take()
			if resp.StatusCode != http.StatusAccepted || len(votes) != 1 {
				t.Fatalf("got %d %s, queued %v: want the vote taken (202), as a new voter's", resp.StatusCode, body, votes)
			}
			if votes[0].VoterID == victim || strings.HasPrefix(tt.cookie, votes[0].VoterID) {
				t.Fatalf("cookie %q: the vote was counted as voter %s, the id the cookie claims", tt.cookie, votes[0].VoterID)
			}
			c := cookieOf(resp, "voter_id")
			if c == nil {
				t.Fatal("no new voter cookie")
			}
			if got, _, ok := verifyCookie(testKey, c.Value); !ok || got != votes[0].VoterID {
				t.Fatalf("new voter cookie %q does not name the voter %s the vote was counted as", c.Value, votes[0].VoterID)
			}
		})
	}
	// The genuine cookie still works, and is the victim's.
	serveWith(h, "POST", "/api/vote", "application/json", `{"vote":"b"}`, "voter_id="+good)
	if votes := rec.take(); len(votes) != 1 || votes[0].VoterID != victim {
		t.Fatalf("the signed cookie voted as %v, want %s", votes, victim)
	}
	if got := counterValue(t, reg, "voting_voter_ids_issued_total", "invalid"); got != 12 {
		t.Errorf("voting_voter_ids_issued_total{reason=invalid} = %v, want 12", got)
	}
}

func splitCookie(v string) (id, stamp, mac string) {
	p := strings.Split(v, ".")
	return p[0], p[1], p[2]
}

// counterValue returns the value of a counter of a metric family with one label.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// TestVoterKeyRotation: a key can be replaced without losing a voter. With the new key
// first and the old one after it, a cookie signed with the old key is accepted and re-signed
// with the new one; once the old key is gone, only cookies it alone signed are refused.
func TestVoterKeyRotation(t *testing.T) {
	const oldKey, newKey = "old-voter-key-0123456789abcdefghijklmnop", "new-voter-key-0123456789abcdefghijklmnop"
	serve := func(keys []string, cookie string) (voting.Vote, *http.Cookie) {
		t.Helper()
		rec := &recorder{}
		var ks [][]byte
		for _, k := range keys {
			ks = append(ks, []byte(k))
		}
		h := newService(t, "a=Cats,b=Dogs", vote.Config{VoterKeys: ks}, rec).Handler()
		resp := serveWith(h, "POST", "/", "application/x-www-form-urlencoded", "vote=a", cookie)
		votes := rec.take()
		if resp.StatusCode != http.StatusOK || len(votes) != 1 {
			t.Fatalf("keys %q: got %d, queued %v", keys, resp.StatusCode, votes)
		}
		return votes[0], cookieOf(resp, "voter_id")
	}
	first, c := serve([]string{oldKey}, "")
	if _, _, ok := verifyCookie(oldKey, c.Value); !ok {
		t.Fatalf("cookie %q not signed with the only key", c.Value)
	}
	// During the rotation: both keys, the new one first.
	v, c2 := serve([]string{newKey, oldKey}, "voter_id="+c.Value)
	if v.VoterID != first.VoterID {
		t.Fatalf("during the rotation the voter became %s, want %s", v.VoterID, first.VoterID)
	}
	if id, _, ok := verifyCookie(newKey, c2.Value); !ok || id != first.VoterID {
		t.Fatalf("cookie %q: want the same voter re-signed with the new key", c2.Value)
	}
	// A browser that has not come back since the rotation still holds the old cookie.
	if v, _ := serve([]string{newKey, oldKey}, "voter_id="+c.Value); v.VoterID != first.VoterID {
		t.Fatal("an old cookie was refused while its key is still listed")
	}
	// After the rotation: the re-signed cookie is the voter; the old one alone is not.
	if v, _ := serve([]string{newKey}, "voter_id="+c2.Value); v.VoterID != first.VoterID {
		t.Fatalf("after the rotation the re-signed voter became %s", v.VoterID)
	}
	if v, _ := serve([]string{newKey}, "voter_id="+c.Value); v.VoterID == first.VoterID {
		t.Fatal("a cookie signed only with a removed key was accepted")
	}
}

// TestLaterVoteWinsOverClocks: a voter's later vote has the later time, whichever replica
// stamps it and whatever its clock says: on one replica whose clock stands still (two votes
// in one microsecond), and across two replicas whose clocks are 30 s apart, in both
// directions. Before the stamp followed the voter, the first case resolved by option id and
// the second by the replicas' clocks.
func TestLaterVoteWinsOverClocks(t *testing.T) {
	frozen := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	type replica struct {
		h   http.Handler
		rec *recorder
	}
	newReplica := func(now time.Time) replica {
		rec := &recorder{}
		return replica{newService(t, "a=Cats,b=Dogs", vote.Config{Now: func() time.Time { return now }}, rec).Handler(), rec}
	}
	// cast votes on r with the browser's cookie and returns the vote and the new cookie.
	cast := func(r replica, cookie, option string) (voting.Vote, string) {
		t.Helper()
		h := ""
		if cookie != "" {
			h = "voter_id=" + cookie
		}
		resp := serveWith(r.h, "POST", "/", "application/x-www-form-urlencoded", "vote="+option, h)
		votes := r.rec.take()
		if resp.StatusCode != http.StatusOK || len(votes) != 1 {
			t.Fatalf("vote %s: got %d, queued %v", option, resp.StatusCode, votes)
		}
		return votes[0], cookieOf(resp, "voter_id").Value
	}
	for _, tt := range []struct {
		name              string
		first, second     replica
		firstOpt, lastOpt string
	}{
		{"one replica, clock standing still", newReplica(frozen), replica{}, "b", "a"},
		{"second replica 30s behind", newReplica(frozen), newReplica(frozen.Add(-30 * time.Second)), "b", "a"},
		{"second replica 30s ahead", newReplica(frozen.Add(30 * time.Second)), newReplica(frozen), "a", "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.second.h == nil {
				tt.second = tt.first
			}
			v1, cookie := cast(tt.first, "", tt.firstOpt)
			v2, _ := cast(tt.second, cookie, tt.lastOpt)
			if v1.VoterID != v2.VoterID {
				t.Fatalf("two voters %s and %s, want one", v1.VoterID, v2.VoterID)
			}
			if !v2.Newer(v1) || v1.Newer(v2) || !v2.At.After(v1.At) {
				t.Fatalf("first vote %s at %s, later vote %s at %s: the later vote must be newer",
					v1.Option, v1.At.Format(time.RFC3339Nano), v2.Option, v2.At.Format(time.RFC3339Nano))
			}
		})
	}
}

// TestStampsUniqueInProcess: votes one process takes never share a time, even when its
// clock stands still, so two votes of one browser in flight at once on one replica are
// ordered as the replica took them, not by option id.
func TestStampsUniqueInProcess(t *testing.T) {
	frozen := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rec := &recorder{}
	h := newService(t, "a=Cats,b=Dogs", vote.Config{Now: func() time.Time { return frozen }}, rec).Handler()
	cookie := "voter_id=" + cookieOf(serveWith(h, "GET", "/", "", "", ""), "voter_id").Value
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			serveWith(h, "POST", "/", "application/x-www-form-urlencoded", "vote="+[]string{"a", "b"}[i%2], cookie)
		})
	}
	wg.Wait()
	seen := map[time.Time]bool{}
	for _, v := range rec.take() {
		if seen[v.At] {
			t.Fatalf("two votes stamped %s", v.At.Format(time.RFC3339Nano))
		}
		seen[v.At] = true
	}
	if len(seen) != 200 {
		t.Fatalf("%d votes queued, want 200", len(seen))
	}
}

// TestVoterKeysRequired: the service does not start without a usable key.
func TestVoterKeysRequired(t *testing.T) {
	opts, _ := voting.ParseOptions("a=Cats,b=Dogs")
	for _, keys := range [][][]byte{nil, {[]byte("short")}} {
		if _, err := vote.New(vote.Config{Options: opts, VoterKeys: keys}, &recorder{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err == nil {
			t.Errorf("keys %q: no error", keys)
		}
	}
}

func TestParseVoterKeys(t *testing.T) {
	k1, k2 := vote.NewVoterKey(), vote.NewVoterKey()
	if k1 == k2 || len(k1) < vote.MinVoterKeyLen {
		t.Fatalf("NewVoterKey: %q, %q", k1, k2)
	}
	keys, err := vote.ParseVoterKeys([]byte("# signing key first\n  " + k1 + "  \n\n" + k2 + "\r\n"))
	if err != nil || len(keys) != 2 || string(keys[0]) != k1 || string(keys[1]) != k2 {
		t.Fatalf("got %q, %v; want the two keys in order", keys, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "short\n", strings.Repeat(k1+"\n", vote.MaxVoterKeys+1)} {
		if _, err := vote.ParseVoterKeys([]byte(bad)); err == nil {
			t.Errorf("ParseVoterKeys(%q): no error", bad)
		}
	}
}
