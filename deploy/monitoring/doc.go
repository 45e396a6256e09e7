// Package monitoring holds the tests that keep the Grafana dashboard, the Prometheus rules and
// the Kubernetes monitoring component honest: they parse with Prometheus' own parsers, query
// only metrics that a running voting process really exposes, and agree with each other.
package monitoring
