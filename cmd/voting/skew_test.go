package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/pgstore"
	"github.com/votingapp/voting/internal/redisqueue"
	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/worker"
)

// skewedStore is what the skew test needs of a store.
type skewedStore interface {
	voting.Recorder
	VoteOf(ctx context.Context, voterID string) (voting.Vote, bool, error)
}

// TestLaterVoteWinsAcrossSkewedReplicas runs two vote services whose clocks are 7 s apart
// (one ahead of real time, one behind) on one queue, and a worker that records into the
// store. Voters vote several times, each vote sent after the previous one was answered, on
// replicas picked at random; the store must hold each voter's last vote. When the replica
// stamped a vote with its own clock alone, a vote served by the replica that runs ahead
// beat every later vote the other one served within 7 s.
func TestLaterVoteWinsAcrossSkewedReplicas(t *testing.T) {
	t.Run("redis and postgres", func(t *testing.T) {
		s := newTestServers(t)
		ctx := context.Background()
		if err := pgstore.Migrate(ctx, s.postgresURL); err != nil {
			t.Fatal(err)
		}
		st, err := pgstore.New(ctx, s.postgresURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		q, err := redisqueue.New(ctx, redisqueue.Config{URL: s.redisURL, Stream: s.stream})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		testSkewedReplicas(t, q, q.Consumer("skew"), q.Stats, st)
	})
	t.Run("embedded", func(t *testing.T) {
		st, err := openEmbeddedStore(context.Background(), t.TempDir())
		if err != nil {
			t.Skip(err) // a -tags nosqlite build has no embedded store
		}
		t.Cleanup(func() { st.Close() })
		q := memqueue.New(memqueue.Config{})
		t.Cleanup(func() { q.Close() })
		testSkewedReplicas(t, q, q.Consumer("skew"), q.Stats, st.(skewedStore))
	})
}

func testSkewedReplicas(t *testing.T, pub voting.Publisher, c voting.Consumer, stats func(context.Context) (voting.QueueStats, error), st skewedStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := worker.New(worker.Config{}, c, st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done; c.Close() }()

	key := [][]byte{[]byte(vote.NewVoterKey())}
	opts, err := voting.ParseOptions(voting.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	replica := func(skew time.Duration) string {
		svc, err := vote.New(vote.Config{Options: opts, VoterKeys: key, Instance: fmt.Sprint(skew),
			Now: func() time.Time { return time.Now().Add(skew) }}, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(svc.Handler())
		t.Cleanup(srv.Close)
		return srv.URL
	}
	replicas := []string{replica(4 * time.Second), replica(-3 * time.Second)}

	const voters, votesEach = 40, 6
	rng := rand.New(rand.NewPCG(1, 2))
	last := map[string]string{}
	for range voters {
		cookie, id, option := "", "", ""
		for i := range votesEach {
			// Alternate the options, so that every vote changes the voter's choice.
			option = []string{"a", "b"}[i%2]
			req, _ := http.NewRequest(http.MethodPost, replicas[rng.IntN(2)]+"/", strings.NewReader(url.Values{"vote": {option}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if cookie != "" {
				req.Header.Set("Cookie", "voter_id="+cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("vote: %s", resp.Status)
			}
			for _, c := range resp.Cookies() {
				if c.Name == "voter_id" {
					cookie = c.Value
				}
			}
			got, _, _ := strings.Cut(cookie, ".")
			if id != "" && got != id {
				t.Fatalf("voter %s became %s", id, got)
			}
			id = got
		}
		last[id] = option
	}

	// Wait until the worker has recorded every vote.
	deadline := time.Now().Add(30 * time.Second)
	for {
		qs, err := stats(context.Background())
		if err == nil && qs.Length == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained in 30s: %+v %v", qs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wrong := 0
	for id, want := range last {
		v, ok, err := st.VoteOf(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || v.Option != want {
			wrong++
			if wrong <= 5 {
				t.Errorf("voter %s: stored %+v, want its last vote, %s", id, v, want)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d voters' later vote lost to an earlier one from the replica whose clock runs ahead", wrong, voters)
	}
}
