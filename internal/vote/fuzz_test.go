package vote_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu    sync.Mutex
	votes []voting.Vote
}

func (r *recorder) Publish(_ context.Context, v voting.Vote) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.votes = append(r.votes, v)
	return nil
}

func (r *recorder) take() []voting.Vote {
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := r.votes
	r.votes = nil
	return vs
}

func newFuzzHandler(f *testing.F) (http.Handler, *recorder) {
	rec := &recorder{}
	return newService(f, "a=Cats,b=Dogs", vote.Config{}, rec).Handler(), rec
}

// fuzzServe runs one request through h, with the raw Cookie header given.
func fuzzServe(h http.Handler, path, ctype string, body []byte, cookie string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", ctype)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// checkQueued fails unless a 2xx queued exactly one valid vote for a configured option and
// anything else queued nothing.
func checkQueued(t *testing.T, w *httptest.ResponseRecorder, rec *recorder, ok int) []voting.Vote {
	t.Helper()
	got := rec.take()
	switch {
	case w.Code >= 500:
		t.Fatalf("got %d %q: bad input must never be a server error", w.Code, w.Body.String())
	case w.Code == ok:
		if len(got) != 1 || (got[0].Option != "a" && got[0].Option != "b") || got[0].Validate() != nil {
			t.Fatalf("%d, queued %+v: want one valid vote for a or b", w.Code, got)
		}
	case w.Code == http.StatusBadRequest || w.Code == http.StatusRequestEntityTooLarge:
		if len(got) != 0 {
			t.Fatalf("%d, yet queued %+v", w.Code, got)
		}
	default:
		t.Fatalf("got %d %q, want %d, 400 or 413", w.Code, w.Body.String(), ok)
	}
	return got
}

// FuzzFormVote posts any body as a form to POST /, with any Cookie header.
func FuzzFormVote(f *testing.F) {
	h, rec := newFuzzHandler(f)
	f.Add([]byte("vote=a"), "")
	f.Fuzz(func(t *testing.T, body []byte, cookie string) {
		w := fuzzServe(h, "/", "application/x-www-form-urlencoded", body, cookie)
		checkQueued(t, w, rec, http.StatusOK)
	})
}

// FuzzAPIVote posts any body to POST /api/vote. Every answer is JSON: the vote, or an error.
func FuzzAPIVote(f *testing.F) {
	h, rec := newFuzzHandler(f)
	f.Add([]byte(`{"vote":"a"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := fuzzServe(h, "/api/vote", "application/json", body, "")
		checkQueued(t, w, rec, http.StatusAccepted)
		var answer map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil || (answer["error"] == "" && answer["vote"] == "") {
			t.Fatalf("answer %q is not the vote or an error in JSON: %v", w.Body.String(), err)
		}
	})
}

// FuzzVoterCookie sends a valid vote with any Cookie header. The vote is always taken: under
// the cookie's voter id when the cookie is one the service signed (testKey), stamped after
// the cookie's stamp; else under a new id, never the one the cookie claims. The answer's
// cookie is signed, names the voter the vote was taken as, and carries the vote's stamp.
// The seeds include cookies signed with testKey, which the fuzzer mutates.
func FuzzVoterCookie(f *testing.F) {
	h, rec := newFuzzHandler(f)
	f.Add("voter_id=" + signCookie(testKey, "0123456789abcdef0123456789abcdef", 1700000000000000))
	f.Fuzz(func(t *testing.T, cookie string) {
		w := fuzzServe(h, "/api/vote", "application/json", []byte(`{"vote":"b"}`), cookie)
		got := checkQueued(t, w, rec, http.StatusAccepted)
		if w.Code != http.StatusAccepted {
			t.Fatalf("a valid vote with cookie %q: got %d, want 202", cookie, w.Code)
		}
		v := got[0]
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Cookie", cookie)
		c, err := req.Cookie("voter_id")
		id, stamp, signed := "", int64(0), false
		if err == nil {
			id, stamp, signed = verifyCookie(testKey, c.Value)
		}
		switch {
		case signed && (v.VoterID != id || v.At.UnixMicro() <= stamp):
			t.Fatalf("cookie %q: voted as %q at %d, want the cookie's voter %q after its stamp %d", cookie, v.VoterID, v.At.UnixMicro(), id, stamp)
		case !signed && err == nil && strings.HasPrefix(c.Value, v.VoterID):
			t.Fatalf("cookie %q, which the service did not sign: voted as the id it claims, %q", cookie, v.VoterID)
		}
		answer := cookieOf(w.Result(), "voter_id")
		if answer == nil {
			t.Fatalf("cookie %q: no voter cookie in the answer", cookie)
		}
		if aid, astamp, ok := verifyCookie(testKey, answer.Value); !ok || aid != v.VoterID || astamp != v.At.UnixMicro() {
			t.Fatalf("cookie %q: answered with voter cookie %q for a vote by %s at %d", cookie, answer.Value, v.VoterID, v.At.UnixMicro())
		}
	})
}
