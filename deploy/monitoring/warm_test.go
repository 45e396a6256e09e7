package monitoring

import (
	"testing"

	"github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/kustomize/api/krusty"
)

func TestWarm(t *testing.T) {
	_ = rulefmt.Parse
	_ = parser.ParseExpr
	_ = krusty.MakeKustomizer
	_ = expfmt.TextParser{}
	_ = v1.PrometheusRule{}
}
