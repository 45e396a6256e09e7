package monitoring

import (
	"bytes"
	"strings"
)

// Paths of the rule file (the one source of the rules) and of the PrometheusRule generated from
// it, relative to this module's directory.
const (
	RulesPath          = "prometheus/voting-rules.yaml"
	PrometheusRulePath = "../k8s/components/monitoring/prometheusrule.yaml"
)

// prometheusRuleHeader is everything of the PrometheusRule but its spec. The release label is
// left out on purpose: which labels a Prometheus selects rules by differs per installation
// (kube-prometheus-stack uses release: <name>), so the component's README shows the patch.
const prometheusRuleHeader = `# GENERATED from deploy/monitoring/prometheus/voting-rules.yaml: do not edit. Change that file,
# then run ` + "`cd deploy/monitoring && go generate ./...`" + `; the tests there fail while the two differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: voting
  namespace: voting
  labels:
    app.kubernetes.io/name: voting
    app.kubernetes.io/component: monitoring
    app.kubernetes.io/part-of: voting
spec:
`

// PrometheusRule returns the PrometheusRule object whose spec is the rule file rules, indented
// under spec: line for line, comments included. A Prometheus rule file is a map with one key,
// groups, exactly like a PrometheusRule's spec, so indenting it is the whole conversion and the
// rules cannot drift in translation.
func PrometheusRule(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for line := range strings.Lines(string(bytes.TrimRight(rules, "\n")) + "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		} else {
			line = "\n"
		}
		b.WriteString(line)
	}
	return b.Bytes()
}
