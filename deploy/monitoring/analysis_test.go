package monitoring

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"sigs.k8s.io/yaml"
)

// AnalysisTemplatePath is the Argo Rollouts AnalysisTemplate of the vote canary
// (deploy/k8s/components/argo-rollouts), relative to this module.
const AnalysisTemplatePath = "../k8s/components/argo-rollouts/analysistemplate.yaml"

// analysisTemplate is the part of an Argo Rollouts AnalysisTemplate this module reads, decoded
// strictly: a field it does not know fails the test (deploy/kubetest decodes the whole
// object with Argo Rollouts' own types; this module keeps their dependencies out).
type analysisTemplate struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Args []struct {
			Name  string  `json:"name"`
			Value *string `json:"value"`
		} `json:"args"`
		Metrics []struct {
			Name              string `json:"name"`
			InitialDelay      string `json:"initialDelay"`
			Interval          string `json:"interval"`
			FailureLimit      int    `json:"failureLimit"`
			InconclusiveLimit int    `json:"inconclusiveLimit"`
			SuccessCondition  string `json:"successCondition"`
			FailureCondition  string `json:"failureCondition"`
			Provider          struct {
				Prometheus struct {
					Address string `json:"address"`
					Query   string `json:"query"`
				} `json:"prometheus"`
			} `json:"provider"`
		} `json:"metrics"`
	} `json:"spec"`
}

// analysisQueries returns the AnalysisTemplate's Prometheus queries by metric name, with its
// arguments replaced: the defaults, then args (a Rollout's namespace and canary version).
func analysisQueries(t *testing.T, args map[string]string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(AnalysisTemplatePath)
	if err != nil {
		t.Fatal(err)
	}
	var at analysisTemplate
	if err := yaml.UnmarshalStrict(b, &at); err != nil {
		t.Fatalf("%s: %v", AnalysisTemplatePath, err)
	}
	values := map[string]string{}
	for _, a := range at.Spec.Args {
		if a.Value != nil {
			values[a.Name] = *a.Value
		}
	}
	for k, v := range args {
		values[k] = v
	}
	qs := map[string]string{}
	for _, m := range at.Spec.Metrics {
		q := m.Provider.Prometheus.Query
		for k, v := range values {
			q = strings.ReplaceAll(q, "{{args."+k+"}}", v)
		}
		if strings.Contains(q, "{{") {
			t.Errorf("metric %s: an argument is left after replacing %v:\n%s", m.Name, values, q)
		}
		qs[m.Name] = q
	}
	if len(qs) == 0 {
		t.Fatalf("%s: no metrics", AnalysisTemplatePath)
	}
	return qs
}

// canaryArgs are what the Rollout of the component gives the template in these tests.
var canaryArgs = map[string]string{"namespace": "voting", "version": "0.2.0"}

// TestAnalysisQueriesParse parses each query of the canary analysis with Prometheus' own
// parser; TestMetricsExistInScrape checks that the metrics they read are exported.
func TestAnalysisQueriesParse(t *testing.T) {
	for name, q := range analysisQueries(t, canaryArgs) {
		if e := parseExpr(t, "analysis metric "+name, q); e != nil && len(metricNames(t, name, e)) == 0 {
			t.Errorf("analysis metric %s reads no metric", name)
		}
	}
}

// TestAnalysisJudgesTheCanary evaluates the canary analysis's queries with Prometheus' engine
// on made-up series of a stable pod (version 0.1.0) and a canary pod (0.2.0) of vote, and
// result's vote-to-screen histogram. The error ratio is the canary's own: a stable version in
// trouble does not fail a good canary, and a canary started with the fault switches on (a
// third of its votes answered 503) shows 0.3 however well the stable pods do. Without canary
// votes the ratio is NaN, and before the canary is scraped there is no series: both are
// inconclusive to the template's conditions (deploy/kubetest evaluates those with Argo's own
// evaluator).
func TestAnalysisJudgesTheCanary(t *testing.T) {
	qs := analysisQueries(t, canaryArgs)
	const (
		stable = `namespace="voting",job="vote",pod="vote-stable"`
		canary = `namespace="voting",job="vote",pod="vote-canary"`
		post   = `server="vote",route="POST /{$}",method="POST"`
	)
	build := func(pod, version string) string {
		return `voting_build_info{` + pod + `,version="` + version + `",commit="c",version_label="` + version + `",accent_color=""} 1x10` + "\n"
	}
	requests := func(pod, code, perMinute string) string {
		return `voting_http_requests_total{` + pod + `,` + post + `,code="` + code + `"} 0+` + perMinute + `x10` + "\n"
	}
	// The stable version answers 10% of its votes with 503 (the queue is in trouble, say):
	// the canary's ratio must not see it.
	stableTraffic := build(stable, "0.1.0") + requests(stable, "200", "540") + requests(stable, "503", "60") +
		// Its GETs do not count: only votes do.
		`voting_http_requests_total{` + stable + `,server="vote",route="GET /{$}",method="GET",code="500"} 0+600x10` + "\n"
	// push is result's histogram with fast pushes (under 0.1 s) and slow ones (1 to 2.5 s) a
	// minute.
	push := func(fast, slow int) string {
		var s strings.Builder
		for _, b := range []struct {
			le        string
			perMinute int
		}{
			{"0.1", fast}, {"0.25", fast}, {"1", fast}, {"2.5", fast + slow}, {"5", fast + slow}, {"+Inf", fast + slow},
		} {
			fmt.Fprintf(&s, "voting_vote_to_push_seconds_bucket{namespace=\"voting\",job=\"result\",pod=\"result-1\",le=%q} 0+%dx10\n", b.le, b.perMinute)
		}
		return s.String()
	}
	cases := []struct {
		name, metric, series string
		want                 float64 // NaN: a NaN sample; -1: no sample
		tolerance            float64
	}{
		{"good canary", "vote-error-ratio", stableTraffic + build(canary, "0.2.0") + requests(canary, "200", "600"), 0, 0},
		{"canary with the fault switches on", "vote-error-ratio", stableTraffic + build(canary, "0.2.0") +
			requests(canary, "200", "400") + requests(canary, "503", "200"), 0.3333, 0.001},
		{"canary without votes yet", "vote-error-ratio", stableTraffic + build(canary, "0.2.0") + requests(canary, "200", "0"), math.NaN(), 0},
		{"canary not scraped yet", "vote-error-ratio", stableTraffic, -1, 0},
		{"votes on screen fast", "vote-to-screen-p95", push(600, 0), 0.095, 0.001},
		{"votes on screen slowly", "vote-to-screen-p95", push(30, 570), 2.4, 0.1},
		{"no votes to show", "vote-to-screen-p95", push(0, 0), math.NaN(), 0},
	}
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	for _, c := range cases {
		q, ok := qs[c.metric]
		if !ok {
			t.Fatalf("no analysis metric %s", c.metric)
		}
		var load strings.Builder
		load.WriteString("load 1m\n")
		for line := range strings.Lines(c.series) {
			load.WriteString("  " + line)
		}
		st := promqltest.LoadedStorage(t, load.String()+"\n")
		got := instant(t, engine, st, q, time.Unix(0, 0).Add(10*time.Minute))
		st.Close()
		switch {
		case c.want == -1:
			if len(got) != 0 {
				t.Errorf("%s: %s = %v, want no sample", c.name, c.metric, got)
			}
		case len(got) != 1:
			t.Errorf("%s: %s = %v, want one sample", c.name, c.metric, got)
		case math.IsNaN(c.want):
			if !math.IsNaN(got[0].F) {
				t.Errorf("%s: %s = %v, want NaN", c.name, c.metric, got[0].F)
			}
		case math.Abs(got[0].F-c.want) > c.tolerance:
			t.Errorf("%s: %s = %v, want %v", c.name, c.metric, got[0].F, c.want)
		}
	}
}

// instant evaluates expr at ts and returns the vector.
func instant(t *testing.T, engine *promql.Engine, storage storage.Queryable, expr string, ts time.Time) promql.Vector {
	t.Helper()
	q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, ts)
	if err != nil {
		t.Fatalf("%v\n%s", err, expr)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%v\n%s", res.Err, expr)
	}
	vec, err := res.Vector()
	if err != nil {
		t.Fatalf("%v\n%s", err, expr)
	}
	return vec
}
