package kubetest

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// twins are the kustomize and Helm renderings meant to deploy the same thing.
var twins = [][2]string{
	{"kustomize-base", "helm-defaults"},
	{"kustomize-overlays-dev", "helm-dev"},
	{"kustomize-overlays-prod", "helm-prod"},
	{"kustomize-tests-shared-gateway", "helm-shared-gateway"},
	{"kustomize-tests-ingress-nginx", "helm-ingress-nginx"},
}

// podsByComponent indexes pod templates by their component label.
func podsByComponent(objs []object) map[string]podTemplate {
	out := map[string]podTemplate{}
	for _, p := range podTemplates(objs) {
		out[p.Meta.Labels["app.kubernetes.io/component"]] = p
	}
	return out
}

// containerView is what must agree between kustomize and Helm for one container.
type containerView struct {
	Name            string
	Image           string
	Command, Args   []string
	Ports           []corev1.ContainerPort
	Liveness        *corev1.Probe
	Readiness       *corev1.Probe
	SecurityContext *corev1.SecurityContext
	Resources       corev1.ResourceRequirements
	VolumeMounts    []corev1.VolumeMount
}

func viewOf(c corev1.Container) containerView {
	return containerView{c.Name, c.Image, c.Command, c.Args, c.Ports, c.LivenessProbe, c.ReadinessProbe,
		c.SecurityContext, c.Resources, c.VolumeMounts}
}

// TestKustomizeAndHelmAgree compares each kustomization with its Helm twin: images, commands,
// ports, probes, security contexts, resources, grace periods, settings, Services, HPAs, PDBs,
// spreading, HTTPRoutes (parentRefs, hostnames, paths, backends, ports, timeouts), Gateways,
// Ingresses, quotas, and the flows the NetworkPolicies allow. The Helm test pod and its flows
// exist only in Helm.
func TestKustomizeAndHelmAgree(t *testing.T) {
	for _, pair := range twins {
		k, h := target(t, pair[0]), target(t, pair[1])
		where := pair[0] + " vs " + pair[1]
		kp, hp := podsByComponent(k.Objects), podsByComponent(h.Objects)
		delete(hp, "test")
		if got, want := keys(hp), keys(kp); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: components %v vs %v", where, want, got)
		}
		for comp, kt := range kp {
			ht, ok := hp[comp]
			if !ok {
				continue
			}
			cw := where + ": " + comp
			ks, hs := kt.Spec, ht.Spec
			same(t, cw+" pod securityContext", ks.SecurityContext, hs.SecurityContext)
			same(t, cw+" automountServiceAccountToken", ks.AutomountServiceAccountToken, hs.AutomountServiceAccountToken)
			same(t, cw+" enableServiceLinks", ks.EnableServiceLinks, hs.EnableServiceLinks)
			same(t, cw+" terminationGracePeriodSeconds", ks.TerminationGracePeriodSeconds, hs.TerminationGracePeriodSeconds)
			same(t, cw+" volumes", ks.Volumes, hs.Volumes)
			same(t, cw+" spread topology keys", spreadKeys(ks), spreadKeys(hs))
			for i := range max(len(ks.InitContainers), len(hs.InitContainers)) {
				if i >= len(ks.InitContainers) || i >= len(hs.InitContainers) {
					t.Errorf("%s: %d vs %d initContainers", cw, len(ks.InitContainers), len(hs.InitContainers))
					break
				}
				same(t, cw+" initContainer", viewOf(ks.InitContainers[i]), viewOf(hs.InitContainers[i]))
			}
			for i := range max(len(ks.Containers), len(hs.Containers)) {
				if i >= len(ks.Containers) || i >= len(hs.Containers) {
					t.Errorf("%s: %d vs %d containers", cw, len(ks.Containers), len(hs.Containers))
					break
				}
				same(t, cw+" container", viewOf(ks.Containers[i]), viewOf(hs.Containers[i]))
			}
		}

		same(t, where+" settings", configData(t, k), configData(t, h))
		same(t, where+" services", services(k.Objects), services(h.Objects))
		same(t, where+" HPAs", hpas(k.Objects), hpas(h.Objects))
		same(t, where+" PDBs", pdbs(k.Objects), pdbs(h.Objects))
		same(t, where+" HTTPRoutes", routes(k.Objects), routes(h.Objects))
		same(t, where+" Gateways", gateways(k.Objects), gateways(h.Objects))
		same(t, where+" ingresses", ingresses(k.Objects), ingresses(h.Objects))
		same(t, where+" quotas", quotas(k.Objects), quotas(h.Objects))
		same(t, where+" limit ranges", limitRanges(k.Objects), limitRanges(h.Objects))
		kn, hn := len(ofKind[*networkingv1.NetworkPolicy](k.Objects)) > 0, len(ofKind[*networkingv1.NetworkPolicy](h.Objects)) > 0
		if pair[0] != "kustomize-base" && pair[0] != "kustomize-overlays-dev" && kn != hn {
			t.Errorf("%s: NetworkPolicies %v vs %v", where, kn, hn)
		}
		if kn && hn {
			same(t, where+" allowed flows", appFlows(matrix(t, k)), appFlows(matrix(t, h)))
		}
	}
}

// appFlows drops the flows of the `helm test` pod, which only the chart has, and those of
// the Bitnami and CloudNativePG stand-ins: kustomize, one deployment per namespace, takes
// every redis and postgresql pod of the namespace for its own, Helm running its own
// datastores only its release's (TestNetworkPolicyMatrix checks both).
func appFlows(m map[flow]bool) []string {
	var out []string
	for _, f := range sortedFlows(m) {
		if !strings.Contains(f, "helm-test") && !strings.Contains(f, "bitnami-") && !strings.Contains(f, "cnpg-") {
			out = append(out, f)
		}
	}
	return out
}

// same fails when two values differ semantically (quantities compare by value).
func same(t *testing.T, what string, a, b any) {
	t.Helper()
	if !equality.Semantic.DeepEqual(a, b) {
		t.Errorf("%s differ:\n kustomize: %+v\n      helm: %+v", what, deref(a), deref(b))
	}
}

func deref(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func spreadKeys(s corev1.PodSpec) []string {
	var out []string
	for _, c := range s.TopologySpreadConstraints {
		out = append(out, c.TopologyKey+"/"+string(c.WhenUnsatisfiable))
	}
	return out
}

func configData(t *testing.T, r renderedTarget) map[string]string {
	for _, cm := range ofKind[*corev1.ConfigMap](r.Objects) {
		if strings.HasPrefix(cm.Name, "voting-config") {
			return cm.Data
		}
	}
	t.Errorf("%s: no settings ConfigMap", r.Name)
	return nil
}

// component names an object by its component label, the same in both forms.
func component(l map[string]string) string { return l["app.kubernetes.io/component"] }

func services(objs []object) map[string]any {
	out := map[string]any{}
	for _, s := range ofKind[*corev1.Service](objs) {
		out[component(s.Labels)] = []any{s.Spec.Type, s.Spec.ClusterIP, s.Spec.Ports}
	}
	return out
}

func hpas(objs []object) map[string]any {
	out := map[string]any{}
	for _, h := range ofKind[*autoscalingv2.HorizontalPodAutoscaler](objs) {
		out[strings.TrimPrefix(h.Spec.ScaleTargetRef.Name, "voting-")] = []any{h.Spec.MinReplicas, h.Spec.MaxReplicas, h.Spec.Metrics}
	}
	return out
}

func pdbs(objs []object) map[string]any {
	out := map[string]any{}
	for _, p := range ofKind[*policyv1.PodDisruptionBudget](objs) {
		out[p.Spec.Selector.MatchLabels["app.kubernetes.io/component"]] = []any{p.Spec.MaxUnavailable, p.Spec.MinAvailable}
	}
	return out
}

func ingresses(objs []object) map[string]any {
	out := map[string]any{}
	for _, in := range ofKind[*networkingv1.Ingress](objs) {
		var rules []string
		for _, r := range in.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				rules = append(rules, r.Host+p.Path+" "+string(*p.PathType)+" -> "+
					strings.TrimPrefix(p.Backend.Service.Name, "voting-")+":"+p.Backend.Service.Port.Name)
			}
		}
		out[strings.TrimPrefix(in.Name, "voting-")] = []any{*in.Spec.IngressClassName, in.Annotations, rules}
	}
	return out
}

func quotas(objs []object) []any {
	var out []any
	for _, q := range ofKind[*corev1.ResourceQuota](objs) {
		out = append(out, q.Spec)
	}
	return out
}

func limitRanges(objs []object) []any {
	var out []any
	for _, l := range ofKind[*corev1.LimitRange](objs) {
		out = append(out, l.Spec)
	}
	return out
}
