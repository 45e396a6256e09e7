package telemetry

import (
	"maps"
	"slices"
	"testing"

	"github.com/votingapp/voting/internal/buildinfo"
)

// buildInfo returns the labels of voting_build_info in a registry made with r.
func buildInfo(t *testing.T, r Rollout) map[string]string {
	t.Helper()
	mfs, err := NewRegistry(r).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "voting_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("voting_build_info: %v, want one series at 1", mf.GetMetric())
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		return labels
	}
	t.Fatal("no voting_build_info")
	return nil
}

// TestBuildInfoCarriesTheRollout: voting_build_info keeps its build labels and adds the
// version label and accent colour, empty when unset, so that every process has the same
// label names and dashboards can split by version.
func TestBuildInfoCarriesTheRollout(t *testing.T) {
	got := buildInfo(t, Rollout{VersionLabel: "v2 canary", AccentColor: "#0a7d4f"})
	want := map[string]string{"version": buildinfo.Version(), "commit": buildinfo.Commit(), "version_label": "v2 canary", "accent_color": "#0a7d4f"}
	if !maps.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	got = buildInfo(t, Rollout{})
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, []string{"accent_color", "commit", "version", "version_label"}) ||
		got["version_label"] != "" || got["accent_color"] != "" {
		t.Errorf("without a rollout: labels %v, want the same names with the two empty", got)
	}
}
