package kubetest

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	rolloutsv1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	argoevaluate "github.com/argoproj/argo-rollouts/utils/evaluate"
	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// argoTarget is the combination that releases vote with components/argo-rollouts: the prod
// overlay, a new image tag with its `version` label and an accent colour, and a changed
// setting.
const argoTarget = "kustomize-tests-argo-rollouts"

// TestArgoRolloutsReplacesVoteDeployment: with the component, vote is a Rollout (decoded
// strictly with Argo Rollouts' own types) whose pods are the prod overlay's vote pods plus
// what a release changes (image, `version` label, accent annotation) and the two variables
// that name the version from them; the HPA scales the Rollout; no vote Deployment is left.
func TestArgoRolloutsReplacesVoteDeployment(t *testing.T) {
	r := target(t, argoTarget)
	rollout := argoRollout(t, r)
	for _, d := range ofKind[*appsv1.Deployment](r.Objects) {
		if d.Name == "vote" {
			t.Errorf("%s: Deployment vote is still there next to the Rollout", argoTarget)
		}
	}
	var prod *appsv1.Deployment
	for _, d := range ofKind[*appsv1.Deployment](target(t, "kustomize-overlays-prod").Objects) {
		if d.Name == "vote" {
			prod = d
		}
	}
	if prod == nil {
		t.Fatal("kustomize-overlays-prod: no Deployment vote")
	}
	if !equality.Semantic.DeepEqual(rollout.Spec.Selector, prod.Spec.Selector) || rollout.Spec.Replicas != nil {
		t.Errorf("Rollout vote: selector %v, replicas %v; want the Deployment's selector %v and no replicas (the HPA's)",
			rollout.Spec.Selector, rollout.Spec.Replicas, prod.Spec.Selector)
	}

	want := prod.Spec.Template.DeepCopy()
	want.Labels["version"] = "0.2.0"
	want.Annotations["accent-color"] = "green"
	c := &want.Spec.Containers[0]
	c.Image = "ghcr.io/votingapp/voting:0.2.0"
	c.Env = append(c.Env,
		corev1.EnvVar{Name: "VOTING_VERSION_LABEL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['version']"}}},
		corev1.EnvVar{Name: "VOTING_ACCENT_COLOR", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['accent-color']"}}})
	// The combination changes a setting: the generated ConfigMap's new name must reach the
	// Rollout's pods (Argo's kustomize configuration in the component does that).
	config := ""
	for _, cm := range ofKind[*corev1.ConfigMap](r.Objects) {
		if strings.HasPrefix(cm.Name, "voting-config") {
			config = cm.Name
		}
	}
	if config == "" || config == c.EnvFrom[0].ConfigMapRef.Name {
		t.Errorf("%s: settings ConfigMap %q, want a new name after the change of a setting", argoTarget, config)
	}
	c.EnvFrom[0].ConfigMapRef.Name = config
	if !equality.Semantic.DeepEqual(*want, rollout.Spec.Template) {
		gotJSON, _ := json.Marshal(rollout.Spec.Template)
		wantJSON, _ := json.Marshal(want)
		t.Errorf("Rollout vote's pod template is not the prod Deployment's with the release's changes:\n got: %s\nwant: %s", gotJSON, wantJSON)
	}

	found := false
	for _, h := range ofKind[*autoscalingv2.HorizontalPodAutoscaler](r.Objects) {
		if h.Name == "vote" {
			found = true
			if ref := h.Spec.ScaleTargetRef; ref.APIVersion != "argoproj.io/v1alpha1" || ref.Kind != "Rollout" || ref.Name != "vote" {
				t.Errorf("HPA vote scales %+v, want the Rollout vote", ref)
			}
		}
	}
	if !found {
		t.Errorf("%s: no HPA vote", argoTarget)
	}
}

// TestArgoRolloutsCanarySteps: the canary goes up in steps with pauses, never to 100% before
// it is promoted, and is judged in the background from the first step on by the component's
// AnalysisTemplate, every argument of which the Rollout gives; the `version` argument resolves,
// as Argo Rollouts resolves it, to the canary's `version` label, a valid --version-label.
func TestArgoRolloutsCanarySteps(t *testing.T) {
	r := target(t, argoTarget)
	rollout := argoRollout(t, r)
	canary := rollout.Spec.Strategy.Canary
	if canary == nil || rollout.Spec.Strategy.BlueGreen != nil {
		t.Fatalf("Rollout vote: strategy %+v, want a canary", rollout.Spec.Strategy)
	}
	last, pauses := int32(0), 0
	for i, s := range canary.Steps {
		switch {
		case s.SetWeight != nil:
			if *s.SetWeight <= last || *s.SetWeight >= 100 {
				t.Errorf("step %d: weight %d after %d, want it to grow and stay below 100", i, *s.SetWeight, last)
			}
			last = *s.SetWeight
		case s.Pause != nil:
			if s.Pause.Duration == nil {
				t.Errorf("step %d: a pause without a duration waits for a person at every release", i)
			}
			pauses++
		}
	}
	if last == 0 || pauses == 0 {
		t.Errorf("steps %+v: want weights with pauses between them", canary.Steps)
	}
	bg := canary.Analysis
	if bg == nil || len(bg.Templates) != 1 || bg.StartingStep == nil || *bg.StartingStep < 1 {
		t.Fatalf("background analysis %+v: want one template, from the first step on", bg)
	}
	tpl := analysisTemplate(t, r, bg.Templates[0].TemplateName)
	given := map[string]rolloutsv1alpha1.AnalysisRunArgument{}
	for _, a := range bg.Args {
		given[a.Name] = a
	}
	for _, a := range tpl.Spec.Args {
		if _, ok := given[a.Name]; a.Value == nil && !ok {
			t.Errorf("AnalysisTemplate %s: argument %s has no default and the Rollout does not give it", tpl.Name, a.Name)
		}
	}
	version, ok := given["version"]
	if !ok || version.ValueFrom == nil || version.ValueFrom.FieldRef == nil {
		t.Fatalf("the Rollout gives no `version` argument from a field: %+v", version)
	}
	got, err := rolloutField(rollout, version.ValueFrom.FieldRef.FieldPath)
	if err != nil || got != rollout.Spec.Template.Labels["version"] || got != "0.2.0" {
		t.Errorf("argument version from %s = %q, %v; want the template's version label 0.2.0", version.ValueFrom.FieldRef.FieldPath, got, err)
	}
	// What vote accepts as --version-label (web.CheckVersionLabel): a label value always is,
	// unless it is longer than 32 characters.
	if l := rollout.Spec.Template.Labels["version"]; len(l) > 32 || !regexp.MustCompile(`^[!-~]+$`).MatchString(l) {
		t.Errorf("version label %q is not a valid --version-label", l)
	}
	if ns := given["namespace"]; ns.ValueFrom == nil || ns.ValueFrom.FieldRef == nil || ns.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("argument namespace %+v, want the Rollout's metadata.namespace", ns)
	}
}

// TestArgoRolloutsAnalysisDecides evaluates the AnalysisTemplate's conditions with Argo
// Rollouts' own evaluator, on the results its Prometheus provider hands them: a canary below
// the thresholds passes, one above them (the fault switches on: its votes answered 5xx) fails,
// and no data (no votes yet, an empty vector or NaN) is neither: inconclusive, so the rollout
// pauses rather than promoting a version nothing was seen of. deploy/monitoring checks the
// queries themselves on made-up series with Prometheus' engine.
func TestArgoRolloutsAnalysisDecides(t *testing.T) {
	r := target(t, argoTarget)
	tpl := analysisTemplate(t, r, "vote-canary")
	defaults := map[string]string{}
	for _, a := range tpl.Spec.Args {
		if a.Value != nil {
			defaults[a.Name] = *a.Value
		}
	}
	thresholds := map[string]string{"vote-error-ratio": "max-vote-error-ratio", "vote-to-screen-p95": "max-vote-to-screen-seconds"}
	seen := map[string]bool{}
	log := *logrus.NewEntry(logrus.New())
	for _, m := range tpl.Spec.Metrics {
		seen[m.Name] = true
		arg, ok := thresholds[m.Name]
		if !ok {
			t.Errorf("metric %s: not checked here (add it to this test)", m.Name)
			continue
		}
		limit, err := strconv.ParseFloat(defaults[arg], 64)
		if err != nil {
			t.Fatalf("metric %s: threshold %s = %q: %v", m.Name, arg, defaults[arg], err)
		}
		if p := m.Provider.Prometheus; p == nil || !strings.Contains(p.Query, `namespace="{{args.namespace}}"`) || p.Address != "{{args.prometheus-address}}" {
			t.Errorf("metric %s: provider %+v, want Prometheus at {{args.prometheus-address}} and the Rollout's namespace", m.Name, m.Provider)
		}
		if m.InitialDelay == "" || m.Interval == "" {
			t.Errorf("metric %s: initialDelay %q interval %q, want both (the first scrapes of a canary pod come later)", m.Name, m.InitialDelay, m.Interval)
		}
		resolved := m.DeepCopy()
		resolved.SuccessCondition = withArgs(m.SuccessCondition, defaults)
		resolved.FailureCondition = withArgs(m.FailureCondition, defaults)
		for _, c := range []struct {
			result []float64
			want   rolloutsv1alpha1.AnalysisPhase
		}{
			{[]float64{0}, rolloutsv1alpha1.AnalysisPhaseSuccessful},
			{[]float64{limit}, rolloutsv1alpha1.AnalysisPhaseSuccessful},
			{[]float64{limit * 1.5}, rolloutsv1alpha1.AnalysisPhaseFailed},
			{[]float64{limit * 10}, rolloutsv1alpha1.AnalysisPhaseFailed},
			{[]float64{}, rolloutsv1alpha1.AnalysisPhaseInconclusive},
			{[]float64{math.NaN()}, rolloutsv1alpha1.AnalysisPhaseInconclusive},
		} {
			got, err := argoevaluate.EvaluateResult(c.result, *resolved, log)
			if err != nil || got != c.want {
				t.Errorf("metric %s on %v: %s, %v; want %s", m.Name, c.result, got, err, c.want)
			}
		}
	}
	for name := range thresholds {
		if !seen[name] {
			t.Errorf("AnalysisTemplate vote-canary has no metric %s", name)
		}
	}
	// The error ratio looks at the canary's pods only: every voting_build_info it joins is the
	// version's (deploy/monitoring evaluates the query itself).
	for _, m := range tpl.Spec.Metrics {
		q := m.Provider.Prometheus.Query
		if n := strings.Count(q, "voting_build_info{"); m.Name == "vote-error-ratio" && (n < 2 || strings.Count(q, `version_label="{{args.version}}"`) != n) {
			t.Errorf("vote-error-ratio does not select the canary's pods by version_label in every join:\n%s", q)
		}
	}
}

// argoRollout returns the Rollout vote of a rendered target.
func argoRollout(t *testing.T, r renderedTarget) *rolloutsv1alpha1.Rollout {
	t.Helper()
	for _, ro := range ofKind[*rolloutsv1alpha1.Rollout](r.Objects) {
		if ro.Name == "vote" {
			return ro
		}
	}
	t.Fatalf("%s: no Rollout vote", r.Name)
	return nil
}

// analysisTemplate returns the AnalysisTemplate of that name of a rendered target.
func analysisTemplate(t *testing.T, r renderedTarget, name string) *rolloutsv1alpha1.AnalysisTemplate {
	t.Helper()
	for _, a := range ofKind[*rolloutsv1alpha1.AnalysisTemplate](r.Objects) {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("%s: no AnalysisTemplate %s", r.Name, name)
	return nil
}

// withArgs replaces {{args.NAME}} in s with the values of args, as Argo Rollouts resolves a
// metric's arguments.
func withArgs(s string, args map[string]string) string {
	for k, v := range args {
		s = strings.ReplaceAll(s, "{{args."+k+"}}", v)
	}
	return s
}

// rolloutField reads a field of the Rollout by a path such as spec.template.metadata.labels.x,
// the way Argo Rollouts reads an argument's fieldRef outside metadata (utils/analysis,
// extractValueFromRollout, which this mirrors: that package needs k8s.io/kubernetes): the path
// split at dots and brackets, so a key with a dot in it cannot be reached.
func rolloutField(r *rolloutsv1alpha1.Rollout, path string) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", err
	}
	for _, section := range regexp.MustCompile(`[.\[\]]+`).Split(path, -1) {
		if section == "" {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return "", errPath(path)
		}
		v = m[section]
	}
	s, ok := v.(string)
	if !ok {
		return "", errPath(path)
	}
	return s, nil
}

type errPath string

func (e errPath) Error() string { return "no string at " + string(e) + " in the Rollout" }
