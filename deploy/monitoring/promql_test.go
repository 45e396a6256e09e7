package monitoring

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promQL is the parser Prometheus itself uses, with its default options: an expression that
// needs an experimental function or feature flag fails here as it would on a stock server.
var promQL = parser.NewParser(parser.Options{})

// parseExpr parses a PromQL expression or fails the test with the parser's message.
func parseExpr(t *testing.T, where, expr string) parser.Expr {
	t.Helper()
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, expr)
		return nil
	}
	return e
}

// selectors returns the vector selectors of an expression (inside range selectors,
// subqueries and function calls too).
func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// metricName is the metric a selector reads: its name, or an equality matcher on __name__.
// A selector without either (a regexp on __name__) names no single metric and returns "".
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// metricNames returns the sorted metric names an expression reads.
func metricNames(t *testing.T, where string, e parser.Expr) []string {
	t.Helper()
	set := map[string]bool{}
	for _, vs := range selectors(e) {
		name := metricName(vs)
		if name == "" {
			t.Errorf("%s: selector %s names no metric", where, vs)
			continue
		}
		set[name] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// isRecorded tells a recording rule's output (level:metric:operations, with colons) from a
// metric the app exposes.
func isRecorded(name string) bool { return strings.Contains(name, ":") }
