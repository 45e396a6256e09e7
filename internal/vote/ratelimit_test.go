package vote_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
)

// TestRateLimit: with a rate limit the service answers a client's votes past the burst with
// 429 and Retry-After and counts them; its pages are never limited; without one, nothing is.
func TestRateLimit(t *testing.T) {
	opts, _ := voting.ParseOptions(voting.DefaultOptions)
	for _, limit := range []float64{0, 0.001} {
		reg := prometheus.NewRegistry()
		svc, err := vote.New(vote.Config{Options: opts, VoterKeys: [][]byte{[]byte(testKey)}, RateLimit: limit, RateBurst: 2},
			memqueue.New(memqueue.Config{}), slog.New(slog.DiscardHandler), reg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(svc.Handler())
		var codes []int
		for range 4 {
			resp, err := http.PostForm(srv.URL+"/", url.Values{"vote": {"a"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Errorf("limit %g: 429 without Retry-After", limit)
			}
		}
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		want := []int{200, 200, 200, 200}
		if limit > 0 {
			want = []int{200, 200, 429, 429}
		}
		if !slices.Equal(codes, want) || resp.StatusCode != http.StatusOK {
			t.Errorf("limit %g: votes answered %v, then the page %d; want %v, then 200", limit, codes, resp.StatusCode, want)
		}
		var refused float64
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range families {
			if f.GetName() == "voting_votes_rate_limited_total" {
				found, refused = true, f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		if found != (limit > 0) || refused != float64(count(codes, http.StatusTooManyRequests)) {
			t.Errorf("limit %g: voting_votes_rate_limited_total exported %v, value %g; want it exactly with a limit, counting the 429s", limit, found, refused)
		}
	}
}

func count(codes []int, code int) (n int) {
	for _, c := range codes {
		if c == code {
			n++
		}
	}
	return n
}
