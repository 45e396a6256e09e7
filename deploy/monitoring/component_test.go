package monitoring

import (
	"bytes"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// TestPrometheusRuleGenerated checks that the component's PrometheusRule is exactly what
// PrometheusRule renders from the rule file today, so the rule file stays the one source.
func TestPrometheusRuleGenerated(t *testing.T) {
	rules, err := os.ReadFile(RulesPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(PrometheusRulePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, PrometheusRule(rules)) {
		t.Errorf("%s is out of date with %s: run `go generate ./...` in deploy/monitoring", PrometheusRulePath, RulesPath)
	}
}

// TestPrometheusRuleSameGroups decodes the PrometheusRule with the Prometheus Operator's own
// types (unknown fields are errors), hands its groups to Prometheus' rule parser as the
// operator does, and compares them with the rule file's: the same groups, rules, expressions,
// labels and annotations, whatever the formatting.
func TestPrometheusRuleSameGroups(t *testing.T) {
	b, err := os.ReadFile(PrometheusRulePath)
	if err != nil {
		t.Fatal(err)
	}
	var pr monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict(b, &pr); err != nil {
		t.Fatalf("%s: %v", PrometheusRulePath, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Name == "" {
		t.Fatalf("%s: %s %s %q", PrometheusRulePath, pr.APIVersion, pr.Kind, pr.Name)
	}
	spec, err := yaml.Marshal(struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}{pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	got, errs := rulefmt.Parse(spec, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("the PrometheusRule's groups: %v", err)
	}
	want := loadRules(t)
	if got == nil || len(got.Groups) == 0 {
		t.Fatal("the PrometheusRule has no groups")
	}
	if !reflect.DeepEqual(got.Groups, want.Groups) {
		for i := range max(len(got.Groups), len(want.Groups)) {
			if i >= len(got.Groups) || i >= len(want.Groups) || !reflect.DeepEqual(got.Groups[i], want.Groups[i]) {
				t.Errorf("group %d differs between %s and %s", i, PrometheusRulePath, RulesPath)
			}
		}
	}
}

// TestPodMonitorSelectsApp renders the production overlay with the component (kustomize's
// own code, as `kubectl apply -k` would) and checks that the PodMonitor selects exactly the
// vote, worker and result pods, that each of them has the admin port it scrapes, and that the
// job label comes from a label every selected pod carries.
func TestPodMonitorSelectsApp(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), "testdata/prod-monitoring")
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	type podTemplate struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			Containers []struct {
				Name  string `json:"name"`
				Ports []struct {
					Name          string `json:"name"`
					ContainerPort int32  `json:"containerPort"`
				} `json:"ports"`
			} `json:"containers"`
		} `json:"spec"`
	}
	pods := map[string]podTemplate{} // workload name -> pod template
	var monitors []monitoringv1.PodMonitor
	var rules []monitoringv1.PrometheusRule
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		switch r.GetKind() {
		case "Deployment", "StatefulSet":
			var w struct {
				Spec struct {
					Template podTemplate `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(b, &w); err != nil {
				t.Fatal(err)
			}
			pods[r.GetKind()+"/"+r.GetName()] = w.Spec.Template
		case "PodMonitor":
			var pm monitoringv1.PodMonitor
			if err := yaml.UnmarshalStrict(b, &pm); err != nil {
				t.Fatalf("PodMonitor: %v", err)
			}
			monitors = append(monitors, pm)
		case "PrometheusRule":
			var pr monitoringv1.PrometheusRule
			if err := yaml.UnmarshalStrict(b, &pr); err != nil {
				t.Fatalf("PrometheusRule: %v", err)
			}
			rules = append(rules, pr)
		}
	}
	if len(monitors) != 1 || len(rules) != 1 {
		t.Fatalf("got %d PodMonitors and %d PrometheusRules, want one each", len(monitors), len(rules))
	}
	pm := monitors[0]
	if pm.Namespace != "voting" || rules[0].Namespace != "voting" {
		t.Errorf("PodMonitor in namespace %q, PrometheusRule in %q: want the app's namespace voting", pm.Namespace, rules[0].Namespace)
	}
	if len(pm.Spec.PodMetricsEndpoints) == 0 {
		t.Error("the PodMonitor has no podMetricsEndpoints: nothing would be scraped")
	}
	sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	var selected []string
	for name, p := range pods {
		if !sel.Matches(labels.Set(p.Metadata.Labels)) {
			continue
		}
		selected = append(selected, name)
		if _, ok := p.Metadata.Labels[pm.Spec.JobLabel]; !ok {
			t.Errorf("%s has no label %s for the job label", name, pm.Spec.JobLabel)
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil || ep.Path != "/metrics" {
				t.Errorf("endpoint %+v: want a named port and path /metrics", ep)
				continue
			}
			found := false
			for _, c := range p.Spec.Containers {
				for _, port := range c.Ports {
					found = found || port.Name == *ep.Port && port.ContainerPort == 9090
				}
			}
			if !found {
				t.Errorf("%s has no container port %q (9090) to scrape", name, *ep.Port)
			}
		}
	}
	slices.Sort(selected)
	if want := []string{"Deployment/result", "Deployment/vote", "Deployment/worker"}; !slices.Equal(selected, want) {
		t.Errorf("PodMonitor selects %v, want %v", selected, want)
	}
}
