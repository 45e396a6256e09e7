package monitoring

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/promqltest"
)

// alertExprs returns each alert's expression with the recorded series it reads replaced by the
// recording rule's expression, so it can be evaluated on raw series alone (a recorded series
// keeps exactly the labels of its aggregation, so the two are equivalent).
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	type rec struct{ name, expr string }
	var recs []rec
	alerts := map[string]string{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recs = append(recs, rec{r.Record, r.Expr})
				continue
			}
			alerts[r.Alert] = r.Expr
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return len(b.name) - len(a.name) })
	for name, expr := range alerts {
		for _, r := range recs {
			expr = strings.ReplaceAll(expr, r.name, "("+r.expr+")")
		}
		alerts[name] = expr
	}
	return alerts
}

// TestAlertsFire evaluates each alert's expression with Prometheus' own query engine on made-up
// series, at the end of 20 minutes of samples, once in a situation where it must fire and once
// where it must not. `for:` is not evaluated here; the expressions are what can go wrong
// (a missing series silently yielding nothing, max versus sum over duplicated gauges).
func TestAlertsFire(t *testing.T) {
	alerts := alertExprs(t)
	const ns = `namespace="voting"`
	cases := []struct {
		alert  string
		series string // promqltest load block, 1m apart, 21 samples from 0 to 20m
		fires  bool
	}{
		{"VotingConsumerLagHigh", `voting_queue_oldest_pending_age_seconds{` + ns + `,job="vote"} 0+15x20
voting_queue_oldest_pending_age_seconds{` + ns + `,job="worker"} 0+15x20`, true},
		{"VotingConsumerLagHigh", `voting_queue_oldest_pending_age_seconds{` + ns + `,job="worker"} 0.01x20`, false},
		// vote and worker report the same queue: 70 s is 70 s, not 140.
		{"VotingConsumerLagHigh", `voting_queue_oldest_pending_age_seconds{` + ns + `,job="vote"} 70x20
voting_queue_oldest_pending_age_seconds{` + ns + `,job="worker"} 70x20`, false},

		// The worker is gone: no processed series at all. The alert must not need one.
		{"VotingQueueStalled", `voting_queue_length{` + ns + `,job="vote"} 0+10x20`, true},
		{"VotingQueueStalled", `voting_queue_length{` + ns + `,job="vote"} 0+10x20
voting_votes_processed_total{` + ns + `,job="worker"} 5x20`, true},
		{"VotingQueueStalled", `voting_queue_length{` + ns + `,job="vote"} 0+10x20
voting_votes_processed_total{` + ns + `,job="worker"} 0+50x20`, false},
		{"VotingQueueStalled", `voting_queue_length{` + ns + `,job="vote"} 0x20`, false},

		// vote and worker report the same Redis; one at 90% of its limit is enough.
		{"VotingQueueMemoryHigh", `voting_queue_memory_bytes{` + ns + `,job="vote"} 900x20
voting_queue_memory_limit_bytes{` + ns + `,job="vote"} 1000x20
voting_queue_memory_bytes{` + ns + `,job="worker"} 900x20
voting_queue_memory_limit_bytes{` + ns + `,job="worker"} 1000x20`, true},
		{"VotingQueueMemoryHigh", `voting_queue_memory_bytes{` + ns + `,job="vote"} 500x20
voting_queue_memory_limit_bytes{` + ns + `,job="vote"} 1000x20`, false},
		// No maxmemory (limit 0): nothing to be near.
		{"VotingQueueMemoryHigh", `voting_queue_memory_bytes{` + ns + `,job="vote"} 900x20
voting_queue_memory_limit_bytes{` + ns + `,job="vote"} 0x20`, false},

		{"VotingVotesDeadLettered", `voting_queue_dead_letters{` + ns + `,job="worker"} 0x15 3x5`, true},
		{"VotingVotesDeadLettered", `voting_votes_dead_lettered_total{` + ns + `,job="worker",reason="store_refused"} 0x15 1x5`, true},
		{"VotingVotesDeadLettered", `voting_queue_dead_letters{` + ns + `,job="worker"} 3x20
voting_votes_dead_lettered_total{` + ns + `,job="worker",reason="store_refused"} 3x20`, false},

		{"VotingReadinessFlapping", `voting_dependency_up{` + ns + `,job="vote",dependency="redis"} 1x10 0 1 0 1 0 1 0 1 1 1`, true},
		{"VotingReadinessFlapping", `voting_dependency_up{` + ns + `,job="vote",dependency="redis"} 1x10 0x10`, false},

		{"VotingDependencyDown", `voting_dependency_up{` + ns + `,job="worker",dependency="postgres"} 0x20`, true},
		{"VotingDependencyDown", `voting_dependency_up{` + ns + `,job="worker",dependency="postgres"} 1x20`, false},

		{"VotingHTTPErrorRateHigh", `voting_http_requests_total{` + ns + `,job="vote",server="vote",route="POST /{$}",method="POST",code="200"} 0+90x20
voting_http_requests_total{` + ns + `,job="vote",server="vote",route="POST /{$}",method="POST",code="503"} 0+10x20`, true},
		{"VotingHTTPErrorRateHigh", `voting_http_requests_total{` + ns + `,job="vote",server="vote",route="POST /{$}",method="POST",code="200"} 0+99x20
voting_http_requests_total{` + ns + `,job="vote",server="vote",route="POST /{$}",method="POST",code="500"} 0+1x20`, false},

		// The timestamp stops moving at 10m; at 20m it is 600 s old.
		{"VotingResultTallyStale", `voting_tally_updated_timestamp_seconds{` + ns + `,job="result"} 0+60x10 600x10`, true},
		{"VotingResultTallyStale", `voting_tally_updated_timestamp_seconds{` + ns + `,job="result"} 0+60x20`, false},

		// No worker at all, and a worker that records nothing.
		{"VotingWorkerNotProcessing", `voting_votes_accepted_total{` + ns + `,job="vote",option="a"} 0+60x20`, true},
		{"VotingWorkerNotProcessing", `voting_votes_accepted_total{` + ns + `,job="vote",option="a"} 0+60x20
voting_votes_processed_total{` + ns + `,job="worker"} 100x20`, true},
		{"VotingWorkerNotProcessing", `voting_votes_accepted_total{` + ns + `,job="vote",option="a"} 0+60x20
voting_votes_processed_total{` + ns + `,job="worker"} 0+60x20`, false},
		{"VotingWorkerNotProcessing", `voting_votes_accepted_total{` + ns + `,job="vote",option="a"} 60x20`, false},

		{"VotingStoreErrors", `voting_store_errors_total{` + ns + `,job="worker",pod="worker-1"} 0+1x20`, true},
		{"VotingStoreErrors", `voting_store_errors_total{` + ns + `,job="worker",pod="worker-1"} 4x20`, false},
	}
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	tested := map[string]bool{}
	for _, c := range cases {
		expr, ok := alerts[c.alert]
		if !ok {
			t.Errorf("no alert %s", c.alert)
			continue
		}
		tested[c.alert] = true
		var load strings.Builder
		load.WriteString("load 1m\n")
		for line := range strings.Lines(c.series) {
			load.WriteString("  " + line)
		}
		storage := promqltest.LoadedStorage(t, load.String()+"\n")
		q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(0, 0).Add(20*time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", c.alert, err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Fatalf("%s: %v", c.alert, res.Err)
		}
		vec, err := res.Vector()
		if err != nil {
			t.Fatalf("%s: %v", c.alert, err)
		}
		if fired := len(vec) > 0; fired != c.fires {
			t.Errorf("%s on\n%s\nfired=%v (%v), want %v", c.alert, c.series, fired, vec, c.fires)
		}
		for _, s := range vec {
			if c.fires && s.Metric.Get("namespace") != "voting" {
				t.Errorf("%s fired without the namespace label: %v", c.alert, s.Metric)
			}
		}
		q.Close()
		storage.Close()
	}
	for name := range alerts {
		if !tested[name] {
			t.Errorf("alert %s has no case here", name)
		}
	}
}
