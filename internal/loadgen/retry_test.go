package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flakyVote is a vote service that answers 503 to every third vote, after queueing it or
// not (a lost answer), and records each voter's votes in order and how many of one voter
// were ever in flight at once.
type flakyVote struct {
	n        atomic.Int64
	mu       sync.Mutex
	inFlight map[string]int
	maxSame  int
	stored   map[string]string // voter -> newest vote the service queued
	voters   int
}

func (f *flakyVote) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	vote := r.PostForm.Get("vote")
	f.mu.Lock()
	voter := ""
	if c, err := r.Cookie("voter_id"); err == nil {
		voter = c.Value
	} else {
		f.voters++
		voter = fmt.Sprint("v", f.voters)
	}
	f.inFlight[voter]++
	f.maxSame = max(f.maxSame, f.inFlight[voter])
	f.mu.Unlock()
	time.Sleep(time.Millisecond) // so that a second vote of the voter could overlap
	n := f.n.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight[voter]--
	if n%3 == 0 {
		if n%6 == 0 {
			f.stored[voter] = vote // queued, but the answer is lost
		}
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	f.stored[voter] = vote
	http.SetCookie(w, &http.Cookie{Name: "voter_id", Value: voter})
	w.WriteHeader(http.StatusOK)
}

// TestRetryAndSerialVoters: with Retry every vote ends accepted; with SerialVoters no two
// votes of one voter are in flight at once; and the service's state is Final, except for
// votes the report marks unsure.
func TestRetryAndSerialVoters(t *testing.T) {
	f := &flakyVote{inFlight: map[string]int{}, stored: map[string]string{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{
		URL: srv.URL, Votes: 600, Concurrency: 8, Reuse: 0.7, Retry: 10 * time.Second, SerialVoters: true,
		Weights: []Weight{{Option: "a", Weight: 1}, {Option: "b", Weight: 1}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 600 || rep.Retried < 150 {
		t.Fatalf("accepted %d, retried %d: want all 600 accepted after about 300 retries", rep.Accepted, rep.Retried)
	}
	if f.maxSame != 1 {
		t.Errorf("%d votes of one voter in flight at once, want 1", f.maxSame)
	}
	var unsureUsed, extra int
	for voter, got := range f.stored {
		want, ok := rep.Final[voter]
		switch {
		case !ok:
			extra++
		case got == want:
		case contains(rep.Unsure[voter], got):
			unsureUsed++
		default:
			t.Errorf("voter %s: service holds %s, report says %s (unsure %v)", voter, got, want, rep.Unsure[voter])
		}
	}
	if extra > rep.UnsureNew {
		t.Errorf("%d voters unknown to the report, more than its %d unsure new voters", extra, rep.UnsureNew)
	}
	t.Logf("retried %d; %d voters' newest vote was one whose answer was lost; %d lost-answer new voters", rep.Retried, unsureUsed, extra)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
