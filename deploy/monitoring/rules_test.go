package monitoring

import (
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
)

// docsPath is the operations guide that every alert's runbook_url points into.
const docsPath = "../../docs/operations.md"

// runbookBase is where runbook_url annotations point: the operations guide on the default
// branch. Anchors are GitHub's heading slugs.
const runbookBase = "https://github.com/votingapp/voting/blob/main/docs/operations.md#"

// loadRules parses the rule file with Prometheus' own loader: strict YAML (unknown fields are
// errors), every expr parsed as PromQL, label and annotation templates parsed, durations and
// names validated.
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(RulesPath, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rulefmt: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	return groups
}

// TestRulesParse loads the rule file as Prometheus does and checks what Prometheus does not:
// every alert is actionable (severity, summary, description, runbook text and a runbook_url
// whose anchor exists in docs/operations.md), recorded series are defined before use, and the
// expected alerts are all there.
func TestRulesParse(t *testing.T) {
	groups := loadRules(t)
	anchors := docAnchors(t)
	recorded := map[string]bool{}
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Record + r.Alert
			e := parseExpr(t, where, r.Expr)
			if e == nil {
				continue
			}
			for _, name := range metricNames(t, where, e) {
				if isRecorded(name) && !recorded[name] {
					t.Errorf("%s reads %s, which no earlier recording rule defines", where, name)
				}
			}
			if r.Record != "" {
				if !isRecorded(r.Record) {
					t.Errorf("recording rule %s: name it level:metric:operations", r.Record)
				}
				recorded[r.Record] = true
				continue
			}
			alerts = append(alerts, r.Alert)
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, runbookBase)
			switch {
			case !ok:
				t.Errorf("alert %s: runbook_url %q does not start with %s", r.Alert, url, runbookBase)
			case anchor != strings.ToLower(r.Alert):
				t.Errorf("alert %s: runbook_url anchor %q, want %q (a heading named after the alert)", r.Alert, anchor, strings.ToLower(r.Alert))
			case !anchors[anchor]:
				t.Errorf("alert %s: %s has no heading with anchor #%s", r.Alert, docsPath, anchor)
			}
		}
	}
	for _, want := range []string{
		"VotingConsumerLagHigh", "VotingQueueStalled", "VotingVotesDeadLettered",
		"VotingReadinessFlapping", "VotingHTTPErrorRateHigh", "VotingResultTallyStale",
		"VotingWorkerNotProcessing",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s is missing", want)
		}
	}
}

// TestRulesCatchErrors proves that the loader used above rejects a broken rule, so a passing
// TestRulesParse means something.
func TestRulesCatchErrors(t *testing.T) {
	for name, content := range map[string]string{
		"bad promql":    "groups: [{name: g, rules: [{alert: A, expr: 'sum(rate(x[5m])'}]}]",
		"unknown field": "groups: [{name: g, rules: [{alert: A, expr: up, severity: page}]}]",
		"bad template":  "groups: [{name: g, rules: [{alert: A, expr: up, annotations: {summary: '{{ $labels.x '}}]}]",
	} {
		_, errs := rulefmt.Parse([]byte(content), false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
		if len(errs) == 0 {
			t.Errorf("%s: the rule parser accepted it", name)
		}
	}
}

var headingRE = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)

// docAnchors returns the GitHub anchors of the headings in docs/operations.md.
func docAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatalf("the runbooks: %v", err)
	}
	anchors := map[string]bool{}
	for _, m := range headingRE.FindAllStringSubmatch(string(b), -1) {
		anchors[slug(m[1])] = true
	}
	return anchors
}

// slug is GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces
// turned into dashes.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
