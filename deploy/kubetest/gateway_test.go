package kubetest

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// nsOf is an object's namespace as the cluster will see it: Helm leaves it empty and the
// release's namespace applies.
func nsOf(ns string) string {
	if ns == "" {
		return render.Namespace
	}
	return ns
}

// backend is where a route or an Ingress sends traffic: a Service port, resolved to the
// container port of the pods behind it.
type backend struct {
	Service   string
	Component string // the Service's app.kubernetes.io/component
	Port      corev1.ContainerPort
}

// resolveBackend finds the Service name in namespace ns of the rendering and the port of it
// that port selects (by number for an HTTPRoute, by name for an Ingress), then the container
// port its targetPort names on the pods it selects. It fails when any of them is missing.
func resolveBackend(objs []object, ns, name string, port intstr.IntOrString) (backend, error) {
	var svc *corev1.Service
	for _, s := range ofKind[*corev1.Service](objs) {
		if s.Name == name && nsOf(s.Namespace) == ns {
			svc = s
		}
	}
	if svc == nil {
		return backend{}, fmt.Errorf("no Service %s/%s", ns, name)
	}
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if (port.Type == intstr.Int && p.Port == port.IntVal) || (port.Type == intstr.String && p.Name == port.StrVal) {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return backend{}, fmt.Errorf("Service %s has no port %s", name, port.String())
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var found *corev1.ContainerPort
	pods := 0
	for _, p := range podTemplates(objs) {
		if len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(p.Meta.Labels)) || nsOf(p.Namespace) != ns {
			continue
		}
		pods++
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if (sp.TargetPort.Type == intstr.String && cp.Name == sp.TargetPort.StrVal) ||
					(sp.TargetPort.Type == intstr.Int && cp.ContainerPort == sp.TargetPort.IntVal) {
					cp := cp
					if cp.Protocol == "" {
						cp.Protocol = corev1.ProtocolTCP
					}
					found = &cp
				}
			}
		}
	}
	if pods == 0 {
		return backend{}, fmt.Errorf("Service %s selects no pod of the rendering", name)
	}
	if found == nil {
		return backend{}, fmt.Errorf("Service %s port %d: targetPort %s is no container port of its pods", name, sp.Port, sp.TargetPort.String())
	}
	return backend{Service: name, Component: component(svc.Labels), Port: *found}, nil
}

// routeBackends resolves every backendRef of every HTTPRoute of the rendering, and checks
// each parentRef: a Gateway in the route's namespace must be in the rendering, with a
// listener of that sectionName that admits routes of the namespace; a Gateway in another
// namespace is the platform's (only its reference can be checked). It returns the backends
// by route ("HTTPRoute/<name>").
func routeBackends(r renderedTarget) (map[string][]backend, []error) {
	var errs []error
	out := map[string][]backend{}
	gateways := ofKind[*gatewayv1.Gateway](r.Objects)
	for _, rt := range ofKind[*gatewayv1.HTTPRoute](r.Objects) {
		ns := nsOf(rt.Namespace)
		where := "HTTPRoute/" + rt.Name
		if len(rt.Spec.ParentRefs) == 0 {
			errs = append(errs, fmt.Errorf("%s has no parentRefs", where))
		}
		for _, p := range rt.Spec.ParentRefs {
			if err := checkParent(gateways, ns, p); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
		if len(rt.Spec.Hostnames) == 0 {
			errs = append(errs, fmt.Errorf("%s has no hostnames: it would take every host of the listener", where))
		}
		for i, rule := range rt.Spec.Rules {
			if len(rule.BackendRefs) == 0 {
				errs = append(errs, fmt.Errorf("%s rule %d has no backendRefs", where, i))
			}
			for _, b := range rule.BackendRefs {
				ref := b.BackendObjectReference
				if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
					errs = append(errs, fmt.Errorf("%s: backendRef %s is not a Service", where, ref.Name))
					continue
				}
				bns := ns
				if ref.Namespace != nil {
					bns = string(*ref.Namespace)
				}
				if ref.Port == nil {
					errs = append(errs, fmt.Errorf("%s: backendRef %s has no port (required for a Service)", where, ref.Name))
					continue
				}
				be, err := resolveBackend(r.Objects, bns, string(ref.Name), intstr.FromInt32(*ref.Port))
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
					continue
				}
				out[where] = append(out[where], be)
			}
		}
	}
	return out, errs
}

func checkParent(gateways []*gatewayv1.Gateway, routeNS string, p gatewayv1.ParentReference) error {
	if (p.Group != nil && *p.Group != gatewayv1.GroupName) || (p.Kind != nil && *p.Kind != "Gateway") {
		return fmt.Errorf("parentRef %s is not a Gateway", p.Name)
	}
	gns := routeNS
	if p.Namespace != nil {
		gns = string(*p.Namespace)
	}
	if gns != routeNS {
		return nil // the platform's Gateway, outside this rendering
	}
	for _, g := range gateways {
		if g.Name != string(p.Name) || nsOf(g.Namespace) != gns {
			continue
		}
		for _, l := range g.Spec.Listeners {
			if p.SectionName != nil && l.Name != *p.SectionName {
				continue
			}
			if l.Protocol != gatewayv1.HTTPProtocolType && l.Protocol != gatewayv1.HTTPSProtocolType {
				return fmt.Errorf("listener %s of Gateway %s is %s, not HTTP(S)", l.Name, g.Name, l.Protocol)
			}
			if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil && l.AllowedRoutes.Namespaces.From != nil &&
				*l.AllowedRoutes.Namespaces.From == gatewayv1.NamespacesFromSelector {
				return fmt.Errorf("listener %s of Gateway %s admits routes by a namespace selector this test cannot check", l.Name, g.Name)
			}
			return nil
		}
		return fmt.Errorf("Gateway %s has no listener %v", g.Name, deref(p.SectionName))
	}
	return fmt.Errorf("parentRef Gateway %s/%s is not in the rendering (add components/own-gateway, or point parentRefs at your Gateway)", gns, p.Name)
}

// ingressBackends resolves every backend of every Ingress of the rendering, by Ingress
// ("Ingress/<name>").
func ingressBackends(r renderedTarget) (map[string][]backend, []error) {
	var errs []error
	out := map[string][]backend{}
	for _, in := range ofKind[*networkingv1.Ingress](r.Objects) {
		for _, rule := range in.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				svc := p.Backend.Service
				if svc == nil {
					errs = append(errs, fmt.Errorf("Ingress/%s: backend is not a Service", in.Name))
					continue
				}
				port := intstr.FromString(svc.Port.Name)
				if svc.Port.Name == "" {
					port = intstr.FromInt32(svc.Port.Number)
				}
				be, err := resolveBackend(r.Objects, nsOf(in.Namespace), svc.Name, port)
				if err != nil {
					errs = append(errs, fmt.Errorf("Ingress/%s: %w", in.Name, err))
					continue
				}
				out["Ingress/"+in.Name] = append(out["Ingress/"+in.Name], be)
			}
		}
	}
	return out, errs
}

// TestRoutesPointAtServices checks, in every rendering, that each HTTPRoute backendRef and
// each Ingress backend names a Service of the same rendering, a port that Service has, and
// through its targetPort a container port of the pods it selects; that each route's parent
// Gateway, when it is in the rendering, has the listener named; and that vote's routes lead
// to vote's port 8080 and result's to result's 8081.
func TestRoutesPointAtServices(t *testing.T) {
	withRoutes := map[string]bool{}
	for _, r := range renderAll(t) {
		routes, errs := routeBackends(r)
		ingresses, ierrs := ingressBackends(r)
		for _, err := range append(errs, ierrs...) {
			t.Errorf("%s: %v", r.Name, err)
		}
		for name, bes := range merge(routes, ingresses) {
			withRoutes[r.Name] = true
			_, obj, _ := strings.Cut(name, "/")
			want := strings.TrimPrefix(obj, "voting-")
			for _, be := range bes {
				if be.Component != want {
					t.Errorf("%s: %s leads to %s, want %s", r.Name, name, be.Component, want)
				}
				if wantPort := map[string]int32{"vote": 8080, "result": 8081}[want]; be.Port.ContainerPort != wantPort || be.Port.Name != "http" {
					t.Errorf("%s: %s leads to port %s/%d, want http/%d", r.Name, name, be.Port.Name, be.Port.ContainerPort, wantPort)
				}
			}
		}
	}
	for _, name := range []string{
		"kustomize-overlays-prod", "kustomize-tests-dev-all-components", "kustomize-tests-shared-gateway",
		"kustomize-tests-ingress-nginx", "helm-prod", "helm-shared-gateway", "helm-ingress-nginx",
	} {
		if !withRoutes[name] {
			t.Errorf("%s has no routes or Ingresses", name)
		}
	}
}

func merge[V any](a, b map[string]V) map[string]V {
	out := map[string]V{}
	for _, m := range []map[string]V{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestRoutesPointAtServicesCatchesMistakes proves the check reacts to a backendRef with a
// wrong port, to one naming no Service, and to a parentRef naming a missing listener.
func TestRoutesPointAtServicesCatchesMistakes(t *testing.T) {
	r := target(t, "kustomize-overlays-prod")
	mutate := func(f func(*gatewayv1.HTTPRoute, *gatewayv1.Gateway)) renderedTarget {
		out := renderedTarget{Target: r.Target}
		var gw *gatewayv1.Gateway
		for _, o := range r.Objects {
			if g, ok := o.Obj.(*gatewayv1.Gateway); ok {
				gw = g.DeepCopy()
				o.Obj = gw
			}
			out.Objects = append(out.Objects, o)
		}
		for i, o := range out.Objects {
			if rt, ok := o.Obj.(*gatewayv1.HTTPRoute); ok && rt.Name == "result" {
				rt = rt.DeepCopy()
				f(rt, gw)
				out.Objects[i].Obj = rt
			}
		}
		return out
	}
	cases := map[string]func(*gatewayv1.HTTPRoute, *gatewayv1.Gateway){
		"wrong port": func(rt *gatewayv1.HTTPRoute, _ *gatewayv1.Gateway) {
			rt.Spec.Rules[0].BackendRefs[0].Port = new(gatewayv1.PortNumber(8081))
		},
		"no such Service": func(rt *gatewayv1.HTTPRoute, _ *gatewayv1.Gateway) {
			rt.Spec.Rules[1].BackendRefs[0].Name = "results"
		},
		"no such listener": func(_ *gatewayv1.HTTPRoute, gw *gatewayv1.Gateway) {
			gw.Spec.Listeners[0].Name = "web"
		},
	}
	for name, f := range cases {
		if _, errs := routeBackends(mutate(f)); len(errs) == 0 {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, errs[0])
		}
	}
}

// TestWebSocketRouteStaysOpen checks every result HTTPRoute: /ws has a rule of its own, matched
// exactly, whose request and backendRequest timeouts are both "0s" (no timeout, per the
// Gateway API spec), while the other rules have a bounded request timeout; and every
// ingress-nginx Ingress of result raises the proxy timeouts. Annotations of ingress-nginx
// appear only on Ingresses of the class "nginx".
func TestWebSocketRouteStaysOpen(t *testing.T) {
	for _, r := range renderAll(t) {
		for _, rt := range ofKind[*gatewayv1.HTTPRoute](r.Objects) {
			if strings.TrimPrefix(rt.Name, "voting-") != "result" {
				continue
			}
			ws := 0
			for _, rule := range rt.Spec.Rules {
				isWS := len(rule.Matches) == 1 && rule.Matches[0].Path != nil &&
					deref(rule.Matches[0].Path.Type) == gatewayv1.PathMatchExact && deref(rule.Matches[0].Path.Value) == "/ws"
				to := rule.Timeouts
				if to == nil || to.Request == nil {
					t.Errorf("%s: HTTPRoute/%s rule %v states no request timeout", r.Name, rt.Name, deref(rule.Name))
					continue
				}
				if isWS {
					ws++
					if *to.Request != "0s" || to.BackendRequest == nil || *to.BackendRequest != "0s" {
						t.Errorf("%s: HTTPRoute/%s /ws timeouts %v/%v, want 0s/0s (none)", r.Name, rt.Name, *to.Request, deref(to.BackendRequest))
					}
				} else if *to.Request == "0s" {
					t.Errorf("%s: HTTPRoute/%s rule %v has no request timeout", r.Name, rt.Name, deref(rule.Name))
				}
			}
			if ws != 1 {
				t.Errorf("%s: HTTPRoute/%s has %d rules for exactly /ws, want 1", r.Name, rt.Name, ws)
			}
		}
		for _, in := range ofKind[*networkingv1.Ingress](r.Objects) {
			nginx := in.Spec.IngressClassName != nil && *in.Spec.IngressClassName == "nginx"
			for k := range in.Annotations {
				if strings.HasPrefix(k, "nginx.ingress.kubernetes.io/") && !nginx {
					t.Errorf("%s: Ingress/%s of class %v has the ingress-nginx annotation %s", r.Name, in.Name, deref(in.Spec.IngressClassName), k)
				}
			}
			if nginx && strings.TrimPrefix(in.Name, "voting-") == "result" {
				for _, k := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
					if in.Annotations["nginx.ingress.kubernetes.io/"+k] != "3600" {
						t.Errorf("%s: Ingress/%s (nginx) %s = %q, want 3600", r.Name, in.Name, k, in.Annotations["nginx.ingress.kubernetes.io/"+k])
					}
				}
			}
		}
	}
}

// TestGatewayOwnOrShared checks the two ways of attaching the routes, in both forms: the prod
// renderings create the Gateway "voting" (class traefik, listener http) and attach to it; the
// shared-gateway renderings create no Gateway and attach to the platform's; without the
// gateway feature there is neither route nor Gateway.
func TestGatewayOwnOrShared(t *testing.T) {
	own := gatewayv1.ParentReference{Name: "voting", SectionName: new(gatewayv1.SectionName("http"))}
	shared := gatewayv1.ParentReference{Name: "shared-gateway", Namespace: new(gatewayv1.Namespace("gateway-system")),
		SectionName: new(gatewayv1.SectionName("http"))}
	cases := map[string]*gatewayv1.ParentReference{
		"kustomize-overlays-prod": &own, "helm-prod": &own, "kustomize-tests-dev-all-components": &own,
		"kustomize-tests-shared-gateway": &shared, "helm-shared-gateway": &shared,
		"kustomize-base": nil, "helm-defaults": nil, "kustomize-tests-ingress-nginx": nil, "helm-ingress-nginx": nil,
	}
	for name, want := range cases {
		r := target(t, name)
		routes, gws := ofKind[*gatewayv1.HTTPRoute](r.Objects), ofKind[*gatewayv1.Gateway](r.Objects)
		if want == nil {
			if len(routes)+len(gws) != 0 {
				t.Errorf("%s: %d HTTPRoutes and %d Gateways, want none", name, len(routes), len(gws))
			}
			continue
		}
		if len(routes) != 2 {
			t.Errorf("%s: %d HTTPRoutes, want 2", name, len(routes))
		}
		for _, rt := range routes {
			same(t, name+" HTTPRoute/"+rt.Name+" parentRefs", []gatewayv1.ParentReference{*want}, rt.Spec.ParentRefs)
		}
		switch {
		case want.Namespace != nil && len(gws) != 0:
			t.Errorf("%s: routes attach to a shared Gateway, but the rendering creates %d", name, len(gws))
		case want.Namespace == nil && len(gws) != 1:
			t.Errorf("%s: %d Gateways, want the own one", name, len(gws))
		case want.Namespace == nil:
			g := gws[0]
			if g.Spec.GatewayClassName != "traefik" || len(g.Spec.Listeners) != 1 || g.Spec.Listeners[0].Port != 8000 {
				t.Errorf("%s: Gateway %s: class %s, listeners %+v", name, g.Name, g.Spec.GatewayClassName, g.Spec.Listeners)
			}
		}
	}
}

// gateways returns each Gateway's spec by name (the chart's own Gateway is named like the
// release, "voting", as the kustomize one).
func gateways(objs []object) map[string]any {
	out := map[string]any{}
	for _, g := range ofKind[*gatewayv1.Gateway](objs) {
		out[g.Name] = g.Spec
	}
	return out
}

// routes returns each HTTPRoute's spec with the Helm release prefix taken off its backends'
// names, so that parentRefs, hostnames, matches, backends, ports, timeouts and filters
// compare exactly.
func routes(objs []object) map[string]any {
	out := map[string]any{}
	for _, rt := range ofKind[*gatewayv1.HTTPRoute](objs) {
		spec := rt.Spec.DeepCopy()
		for i := range spec.Rules {
			for j := range spec.Rules[i].BackendRefs {
				b := &spec.Rules[i].BackendRefs[j]
				b.Name = gatewayv1.ObjectName(strings.TrimPrefix(string(b.Name), "voting-"))
			}
		}
		out[strings.TrimPrefix(rt.Name, "voting-")] = *spec
	}
	return out
}

// edgeProxies are the bystanders that must reach vote and result in a rendering with
// NetworkPolicies: Traefik, which serves the Gateway and the Ingress by default (the
// kustomize component admits it whatever routes exist, and so does the chart), and
// ingress-nginx where the rendering is made for it.
func edgeProxies(name string) []string {
	if strings.Contains(name, "ingress-nginx") {
		return []string{"traefik", "ingress-nginx"}
	}
	return []string{"traefik"}
}

// TestEdgeReachesRoutedPorts ties the routes to the policies: in every rendering with both,
// the pods of the edge proxy (the Gateway's implementation, the Ingress controller) may open
// exactly the container port each HTTPRoute and Ingress sends traffic to, and nothing else
// of the app.
func TestEdgeReachesRoutedPorts(t *testing.T) {
	checked := 0
	for _, r := range renderAll(t) {
		if len(ofKind[*networkingv1.NetworkPolicy](r.Objects)) == 0 {
			continue
		}
		routed, _ := routeBackends(r)
		ing, _ := ingressBackends(r)
		if len(routed)+len(ing) == 0 {
			continue
		}
		checked++
		for _, err := range edgeErrors(t, r, merge(routed, ing)) {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
	if checked < 5 {
		t.Errorf("only %d renderings with routes and policies", checked)
	}
}

func edgeErrors(t *testing.T, r renderedTarget, backends map[string][]backend) []error {
	t.Helper()
	allowed := matrix(t, r)
	var errs []error
	targets := map[flow]bool{}
	for name, bes := range backends {
		for _, be := range bes {
			for _, edge := range edgeProxies(r.Name) {
				f := flow{From: edge, To: podName[be.Component], Port: be.Port.ContainerPort, Protocol: be.Port.Protocol}
				targets[f] = true
				if !allowed[f] {
					errs = append(errs, fmt.Errorf("%s routes to %s/%d, but the policies deny %s", name, be.Service, be.Port.ContainerPort, f))
				}
			}
		}
	}
	for f := range allowed {
		for _, edge := range edgeProxies(r.Name) {
			if f.From == edge && !targets[f] {
				errs = append(errs, fmt.Errorf("the edge proxy may open %s, which no route uses", f))
			}
		}
	}
	return errs
}

// TestEdgeReachesRoutedPortsCatchesMistakes proves the check fails when the policy of result
// admits the edge from the wrong namespace.
func TestEdgeReachesRoutedPortsCatchesMistakes(t *testing.T) {
	r := target(t, "kustomize-overlays-prod")
	out := renderedTarget{Target: r.Target}
	for _, o := range r.Objects {
		if np, ok := o.Obj.(*networkingv1.NetworkPolicy); ok && np.Name == "result" {
			np = np.DeepCopy()
			np.Spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": "gateway-system"}}
			o.Obj = np
		}
		out.Objects = append(out.Objects, o)
	}
	routed, errs := routeBackends(out)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if errs := edgeErrors(t, out, routed); len(errs) == 0 {
		t.Error("a result policy admitting the wrong namespace passed")
	} else {
		t.Logf("caught: %v", errs[0])
	}
}

// TestIngressDefaultClassAgrees renders the chart with ingress.enabled and the default class
// (no values file sets it) and compares its Ingresses with components/ingress in
// tests/dev-all-components: class "traefik", no annotations, the same hosts and backends.
func TestIngressDefaultClassAgrees(t *testing.T) {
	out, err := render.RenderHelm(root+"/deploy/helm/voting", []string{root + "/deploy/helm/values/dev.yaml"},
		map[string]any{"ingress": map[string]any{"enabled": true}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(out)
	if err != nil {
		t.Fatal(err)
	}
	k := target(t, "kustomize-tests-dev-all-components")
	same(t, "dev-all-components vs helm dev + ingress.enabled: ingresses", ingresses(k.Objects), ingresses(objs))
	for _, in := range ofKind[*networkingv1.Ingress](objs) {
		if len(in.Annotations) != 0 || deref(in.Spec.IngressClassName) != "traefik" {
			t.Errorf("Ingress/%s: class %v, annotations %v; want traefik and none", in.Name, deref(in.Spec.IngressClassName), in.Annotations)
		}
	}
}
