package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// DashboardPath is the Grafana dashboard, relative to this module.
const DashboardPath = "grafana/voting-dashboard.json"

// dashboard is the part of Grafana's dashboard JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row holds its panels
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// query is one PromQL expression of the dashboard and where it is.
type query struct {
	where, expr string
}

// loadDashboard decodes the dashboard and returns every PromQL expression in it: each panel
// target's expr, and the metric selector of each label_values() variable query.
func loadDashboard(t *testing.T) (*dashboard, []query) {
	t.Helper()
	b, err := os.ReadFile(DashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", DashboardPath, err)
	}
	var qs []query
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesRE.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		qs = append(qs, query{"variable " + v.Name, m[1]})
	}
	return &d, qs
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// grafanaVars replaces Grafana's variables so that an expression parses as plain PromQL: the
// interval macros become durations, and dashboard variables (always inside a regexp matcher
// here) the regexp that matches anything, as "All" does.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m",
	"$__range", "1h", "${__range}", "1h",
)

var dashVarRE = regexp.MustCompile(`\$\{?(\w+)\}?`)

func substitute(expr string) string {
	return dashVarRE.ReplaceAllString(grafanaVars.Replace(expr), ".*")
}

// TestDashboard parses every expression of the dashboard with Prometheus' PromQL parser and
// checks the model: a datasource variable used by every panel and target, namespace and job
// variables applied to every selector, unique panel ids, panels inside the 24-column grid,
// and panels for each signal the operations guide describes.
func TestDashboard(t *testing.T) {
	d, qs := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d: want 39 (Grafana 10.4/11) or newer", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["namespace"] != "query" || vars["job"] != "query" {
		t.Errorf("template variables %v: want datasource (datasource), namespace and job (query)", vars)
	}

	ids := map[int]string{}
	var titles []string
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
			}
			ids[p.ID] = p.Title
			titles = append(titles, p.Title)
			if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
			}
			if p.Type != "row" {
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
					t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q target %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
				}
			}
			check(p.Panels)
		}
	}
	check(d.Panels)

	for _, q := range qs {
		e := parseExpr(t, q.where, substitute(q.expr))
		if e == nil {
			continue
		}
		for _, vs := range selectors(e) {
			name := metricName(vs)
			if isRecorded(name) {
				t.Errorf("%s reads the recorded series %s: the dashboard must work without the rules loaded", q.where, name)
			}
			if strings.HasPrefix(q.where, "variable ") {
				continue
			}
			for _, v := range []string{"namespace", "job"} {
				if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
					return m.Name == v && m.Type == labels.MatchRegexp
				}) || !strings.Contains(q.expr, v+`=~"$`+v+`"`) {
					t.Errorf("%s: selector %s does not filter by $%s", q.where, name, v)
				}
			}
		}
	}

	// Signals the brief and docs/operations.md promise on the dashboard, by the metric that
	// carries each.
	read := map[string]bool{}
	for _, q := range qs {
		if e, err := promQL.ParseExpr(substitute(q.expr)); err == nil {
			for _, vs := range selectors(e) {
				read[metricName(vs)] = true
			}
		}
	}
	for _, m := range []string{
		"voting_votes_accepted_total", "voting_votes_rejected_total", "voting_http_requests_total",
		"voting_http_request_duration_seconds_bucket", "voting_queue_length", "voting_queue_pending",
		"voting_queue_oldest_pending_age_seconds", "voting_queue_dead_letters",
		"voting_votes_dead_lettered_total", "voting_votes_processed_total", "voting_worker_batch_size_bucket",
		"voting_store_write_duration_seconds_bucket", "voting_vote_record_lag_seconds_bucket",
		"voting_vote_to_push_seconds_bucket", "voting_websocket_clients", "voting_websocket_messages_sent_total",
		"voting_websocket_messages_dropped_total", "voting_dependency_up", "process_resident_memory_bytes",
		"process_cpu_seconds_total", "go_goroutines", "voting_build_info",
	} {
		if !read[m] {
			t.Errorf("no panel reads %s", m)
		}
	}
}

// TestDashboardCatchesErrors proves the extraction and parsing above see a broken expression.
func TestDashboardCatchesErrors(t *testing.T) {
	if _, err := promQL.ParseExpr(substitute(`sum(rate(voting_votes_accepted_total{job=~"$job"}[$__rate_interval])`)); err == nil {
		t.Error("an unbalanced expression parsed")
	}
	if got := substitute(`rate(x{job=~"$job",namespace=~"${namespace}"}[$__rate_interval])`); got != `rate(x{job=~".*",namespace=~".*"}[5m])` {
		t.Errorf("substitute: %s", got)
	}
}
