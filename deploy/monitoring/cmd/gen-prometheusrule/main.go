// Command gen-prometheusrule writes the PrometheusRule of deploy/k8s/components/monitoring from
// deploy/monitoring/prometheus/voting-rules.yaml. Run it from deploy/monitoring (go generate
// does).
package main

import (
	"fmt"
	"os"

	"github.com/votingapp/voting/deploy/monitoring"
)

func main() {
	rules, err := os.ReadFile(monitoring.RulesPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-prometheusrule:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(monitoring.PrometheusRulePath, monitoring.PrometheusRule(rules), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen-prometheusrule:", err)
		os.Exit(1)
	}
}
