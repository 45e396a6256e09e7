// Package monitoring keeps the Grafana dashboard, the Prometheus rules and the Kubernetes
// monitoring component honest: its tests parse them with Prometheus' own parsers, check that
// they query only metrics a running voting process really exposes, and that the
// PrometheusRule of deploy/k8s/components/monitoring carries exactly the rules of
// prometheus/voting-rules.yaml. It also renders that PrometheusRule (see PrometheusRule).
//
// It is a module of its own so that Prometheus and kustomize stay out of the app's go.mod.
package monitoring

//go:generate go run ./cmd/gen-prometheusrule
