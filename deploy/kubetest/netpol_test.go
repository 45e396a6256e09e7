package kubetest

import (
	"cmp"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// endpoint is something that sends or receives traffic: a pod (from a rendered pod template,
// or a stand-in for a pod of another namespace or chart) or an address outside the cluster.
type endpoint struct {
	Name      string
	Namespace string // "" for an address outside the cluster
	Labels    map[string]string
	IP        netip.Addr // for addresses outside the cluster
	Ports     []corev1.ContainerPort
}

// flow is one connection attempt: From opens a connection to To on Port.
type flow struct {
	From, To string
	Port     int32
	Protocol corev1.Protocol
}

func (f flow) String() string { return fmt.Sprintf("%s -> %s:%d/%s", f.From, f.To, f.Port, f.Protocol) }

func tcp(port int32, name string) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

// bystanders are the pods and addresses around the app: the edge proxies (Traefik, which
// serves the Gateway and Ingress, with the labels its Helm chart gives its pods, and the
// ingress-nginx controller), Prometheus, the cluster DNS, the Bitnami charts' pods (with the
// labels those charts give them), an unlabelled pod in the app's namespace, a pod of another
// namespace, and addresses outside.
func bystanders() []endpoint {
	return []endpoint{
		{Name: "traefik", Namespace: "traefik", Labels: map[string]string{
			"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-traefik"},
			Ports: []corev1.ContainerPort{tcp(8000, "web"), tcp(8443, "websecure")}},
		{Name: "ingress-nginx", Namespace: "ingress-nginx", Labels: map[string]string{
			"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
			Ports: []corev1.ContainerPort{tcp(80, "http"), tcp(443, "https")}},
		{Name: "prometheus", Namespace: "monitoring", Labels: map[string]string{"app.kubernetes.io/name": "prometheus"},
			Ports: []corev1.ContainerPort{tcp(9090, "web")}},
		{Name: "kube-dns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, tcp(53, "dns-tcp")}},
		{Name: "bitnami-redis", Namespace: render.Namespace, Labels: map[string]string{
			"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "redis", "app.kubernetes.io/component": "master",
			"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "redis"},
			Ports: []corev1.ContainerPort{tcp(6379, "redis")}},
		{Name: "bitnami-postgresql", Namespace: render.Namespace, Labels: map[string]string{
			"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "postgresql", "app.kubernetes.io/component": "primary",
			"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "postgresql"},
			Ports: []corev1.ContainerPort{tcp(5432, "tcp-postgresql")}},
		// A CloudNativePG instance (the labels the operator gives them) and the operator.
		{Name: "cnpg-instance", Namespace: render.Namespace, Labels: map[string]string{
			"cnpg.io/cluster": "voting-db", "cnpg.io/podRole": "instance", "app.kubernetes.io/name": "postgresql",
			"app.kubernetes.io/managed-by": "cloudnative-pg"},
			Ports: []corev1.ContainerPort{tcp(5432, "postgresql"), tcp(8000, "status")}},
		{Name: "cnpg-operator", Namespace: "cnpg-system", Labels: map[string]string{"app.kubernetes.io/name": "cloudnative-pg"},
			Ports: []corev1.ContainerPort{tcp(9443, "webhook-server")}},
		{Name: "stranger", Namespace: render.Namespace, Labels: map[string]string{},
			Ports: []corev1.ContainerPort{tcp(8080, "http")}},
		{Name: "outsider", Namespace: "default", Labels: map[string]string{"app": "other"},
			Ports: []corev1.ContainerPort{tcp(8080, "http")}},
		{Name: "external-redis", IP: netip.MustParseAddr("10.20.1.5"), Ports: []corev1.ContainerPort{tcp(6379, ""), tcp(6380, "")}},
		{Name: "external-postgres", IP: netip.MustParseAddr("10.20.1.6"), Ports: []corev1.ContainerPort{tcp(5432, "")}},
		{Name: "internet", IP: netip.MustParseAddr("93.184.215.14"), Ports: []corev1.ContainerPort{tcp(443, "https"), tcp(6379, ""), tcp(5432, "")}},
	}
}

// podName names an app pod by its component label, the same in kustomize and Helm.
var podName = map[string]string{
	"vote": "vote", "result": "result", "worker": "worker",
	"queue": "redis", "database": "postgres", "test": "helm-test",
}

// endpoints returns the target's own pods plus the bystanders.
func endpoints(t *testing.T, r renderedTarget) []endpoint {
	t.Helper()
	var eps []endpoint
	for _, p := range podTemplates(r.Objects) {
		name, ok := podName[p.Meta.Labels["app.kubernetes.io/component"]]
		if !ok {
			t.Fatalf("%s: %s has no known component label: %v", r.Name, p.Owner, p.Meta.Labels)
		}
		var ports []corev1.ContainerPort
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Protocol == "" {
					cp.Protocol = corev1.ProtocolTCP
				}
				ports = append(ports, cp)
			}
		}
		eps = append(eps, endpoint{Name: name, Namespace: render.Namespace, Labels: p.Meta.Labels, Ports: ports})
	}
	return append(eps, bystanders()...)
}

// matrix computes every allowed flow between the endpoints under the target's NetworkPolicies,
// with the NetworkPolicy semantics: a pod selected by no policy of a direction is open in that
// direction; a selected one accepts only what some rule of a selecting policy allows; a flow
// needs both the source's egress and the destination's ingress. Only the flows that concern
// the deployment are reported: from or to one of its own pods, or into a pod its policies
// guard (a Bitnami datastore it uses). Other pods, in its namespace or not, are not its to
// police: the policies select the deployment's pods only.
func matrix(t *testing.T, r renderedTarget) map[flow]bool {
	t.Helper()
	policies := ofKind[*networkingv1.NetworkPolicy](r.Objects)
	eps := endpoints(t, r)
	own := map[string]bool{}
	for _, p := range podTemplates(r.Objects) {
		own[podName[p.Meta.Labels["app.kubernetes.io/component"]]] = true
	}
	guarded := func(e endpoint) bool {
		for _, np := range policies {
			if e.Namespace == render.Namespace && hasType(np, networkingv1.PolicyTypeIngress) && selects(t, &np.Spec.PodSelector, e.Labels) {
				return true
			}
		}
		return false
	}
	allowed := map[flow]bool{}
	for _, src := range eps {
		if src.Namespace == "" {
			continue // outside addresses only receive in this model
		}
		for _, dst := range eps {
			if src.Name == dst.Name || !(own[src.Name] || own[dst.Name] || guarded(dst)) {
				continue
			}
			for _, port := range dst.Ports {
				f := flow{From: src.Name, To: dst.Name, Port: port.ContainerPort, Protocol: port.Protocol}
				if allows(t, policies, networkingv1.PolicyTypeEgress, src, dst, port) &&
					allows(t, policies, networkingv1.PolicyTypeIngress, dst, src, port) {
					allowed[f] = true
				}
			}
		}
	}
	return allowed
}

// allows tells whether the policies let subject (the source for egress, the destination for
// ingress) talk to peer on the destination's port.
func allows(t *testing.T, policies []*networkingv1.NetworkPolicy, dir networkingv1.PolicyType, subject, peer endpoint, port corev1.ContainerPort) bool {
	t.Helper()
	if subject.Namespace != render.Namespace {
		return true
	}
	selected := false
	for _, np := range policies {
		if !hasType(np, dir) || !selects(t, &np.Spec.PodSelector, subject.Labels) {
			continue
		}
		selected = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, rule := range np.Spec.Ingress {
				if peersMatch(t, rule.From, peer) && portsMatch(rule.Ports, port) {
					return true
				}
			}
		} else {
			for _, rule := range np.Spec.Egress {
				if peersMatch(t, rule.To, peer) && portsMatch(rule.Ports, port) {
					return true
				}
			}
		}
	}
	return !selected
}

func hasType(np *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	types := np.Spec.PolicyTypes
	if len(types) == 0 { // the API's defaulting
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, ty := range types {
		if ty == dir {
			return true
		}
	}
	return false
}

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(l))
}

func peersMatch(t *testing.T, peers []networkingv1.NetworkPolicyPeer, e endpoint) bool {
	t.Helper()
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			if e.Namespace == "" && inBlock(t, p.IPBlock, e.IP) {
				return true
			}
			continue
		}
		if e.Namespace == "" {
			continue
		}
		nsOK := e.Namespace == render.Namespace
		if p.NamespaceSelector != nil {
			nsOK = selects(t, p.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": e.Namespace})
		}
		podOK := p.PodSelector == nil || selects(t, p.PodSelector, e.Labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

func inBlock(t *testing.T, b *networkingv1.IPBlock, ip netip.Addr) bool {
	t.Helper()
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		t.Fatal(err)
	}
	if !cidr.Contains(ip) {
		return false
	}
	for _, ex := range b.Except {
		if p, err := netip.ParsePrefix(ex); err == nil && p.Contains(ip) {
			return false
		}
	}
	return true
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, port corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != port.Protocol {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.IntValue() != 0 {
			end := int32(p.Port.IntValue())
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if port.ContainerPort >= int32(p.Port.IntValue()) && port.ContainerPort <= end {
				return true
			}
		} else if port.Name != "" && p.Port.StrVal == port.Name {
			return true
		}
	}
	return false
}

// expectedFlows is the list, written out for the endpoints present: the edge proxies
// (the Gateway's and the Ingress controller's pods, see edgeProxies) → vote, result; vote → Redis; worker → Redis and PostgreSQL; result → PostgreSQL (migrate runs
// in the worker and result pods); everyone → DNS; Prometheus → admin ports; the helm test pod →
// vote, result; and, where the target configures them, the app → the external datastores.
func expectedFlows(eps []endpoint, edges []string, externalRedis, externalPostgres int32, bitnami, cnpg bool) map[flow]bool {
	has := map[string]bool{}
	for _, e := range eps {
		has[e.Name] = true
	}
	want := map[flow]bool{}
	add := func(from, to string, port int32, proto corev1.Protocol) {
		if has[from] && has[to] {
			want[flow{From: from, To: to, Port: port, Protocol: proto}] = true
		}
	}
	redises := []string{"redis"}
	postgreses := []string{"postgres"}
	if bitnami { // datastores of another chart or operator in the namespace that the policies guard
		redises, postgreses = append(redises, "bitnami-redis"), append(postgreses, "bitnami-postgresql", "cnpg-instance")
	}
	if cnpg { // the app and the operator reach the instances
		if !bitnami {
			postgreses = append(postgreses, "cnpg-instance")
		}
		add("cnpg-operator", "cnpg-instance", 8000, corev1.ProtocolTCP)
		add("cnpg-operator", "cnpg-instance", 5432, corev1.ProtocolTCP)
	}
	if externalRedis != 0 {
		add("vote", "external-redis", externalRedis, corev1.ProtocolTCP)
		add("worker", "external-redis", externalRedis, corev1.ProtocolTCP)
	}
	if externalPostgres != 0 {
		add("worker", "external-postgres", externalPostgres, corev1.ProtocolTCP)
		add("result", "external-postgres", externalPostgres, corev1.ProtocolTCP)
	}
	for _, edge := range edges {
		add(edge, "vote", 8080, corev1.ProtocolTCP)
		add(edge, "result", 8081, corev1.ProtocolTCP)
	}
	for _, db := range redises {
		add("vote", db, 6379, corev1.ProtocolTCP)
		add("worker", db, 6379, corev1.ProtocolTCP)
	}
	for _, db := range postgreses {
		add("worker", db, 5432, corev1.ProtocolTCP)
		add("result", db, 5432, corev1.ProtocolTCP)
	}
	for _, c := range appComponents {
		add("prometheus", c, 9090, corev1.ProtocolTCP)
	}
	add("helm-test", "vote", 8080, corev1.ProtocolTCP)
	add("helm-test", "result", 8081, corev1.ProtocolTCP)
	for _, name := range podName { // the deployment's own pods
		if has[name] {
			add(name, "kube-dns", 53, corev1.ProtocolUDP)
			add(name, "kube-dns", 53, corev1.ProtocolTCP)
		}
	}
	return want
}

// deniedFlows must never be allowed, whatever the target; they are implied by the exact
// comparison but spelt out because they are the point of the policies.
var deniedFlows = []flow{
	{"vote", "postgres", 5432, corev1.ProtocolTCP},
	{"vote", "bitnami-postgresql", 5432, corev1.ProtocolTCP},
	{"result", "redis", 6379, corev1.ProtocolTCP},
	{"result", "bitnami-redis", 6379, corev1.ProtocolTCP},
	{"stranger", "redis", 6379, corev1.ProtocolTCP},
	{"stranger", "postgres", 5432, corev1.ProtocolTCP},
	{"stranger", "bitnami-redis", 6379, corev1.ProtocolTCP},
	{"stranger", "bitnami-postgresql", 5432, corev1.ProtocolTCP},
	{"stranger", "vote", 8080, corev1.ProtocolTCP},
	{"outsider", "redis", 6379, corev1.ProtocolTCP},
	{"outsider", "postgres", 5432, corev1.ProtocolTCP},
	{"outsider", "bitnami-redis", 6379, corev1.ProtocolTCP},
	{"outsider", "vote", 8080, corev1.ProtocolTCP},
	{"ingress-nginx", "redis", 6379, corev1.ProtocolTCP},
	{"ingress-nginx", "postgres", 5432, corev1.ProtocolTCP},
	{"ingress-nginx", "vote", 9090, corev1.ProtocolTCP},
	{"traefik", "redis", 6379, corev1.ProtocolTCP},
	{"traefik", "postgres", 5432, corev1.ProtocolTCP},
	{"traefik", "bitnami-postgresql", 5432, corev1.ProtocolTCP},
	{"traefik", "vote", 9090, corev1.ProtocolTCP},
	{"traefik", "result", 9090, corev1.ProtocolTCP},
	{"traefik", "worker", 9090, corev1.ProtocolTCP},
	{"outsider", "vote", 9090, corev1.ProtocolTCP},
	{"outsider", "result", 8081, corev1.ProtocolTCP},
	{"prometheus", "redis", 6379, corev1.ProtocolTCP},
	{"prometheus", "vote", 8080, corev1.ProtocolTCP},
	{"vote", "result", 8081, corev1.ProtocolTCP},
	{"vote", "worker", 9090, corev1.ProtocolTCP},
	{"redis", "postgres", 5432, corev1.ProtocolTCP},
	{"helm-test", "redis", 6379, corev1.ProtocolTCP},
	{"vote", "internet", 443, corev1.ProtocolTCP},
	{"worker", "internet", 443, corev1.ProtocolTCP},
	{"redis", "internet", 443, corev1.ProtocolTCP},
}

// TestNetworkPolicyMatrix computes the allow matrix of every target that has NetworkPolicies
// and compares it with the expected flows exactly: nothing missing, nothing extra.
func TestNetworkPolicyMatrix(t *testing.T) {
	withPolicies := map[string]bool{}
	for _, r := range renderAll(t) {
		if len(ofKind[*networkingv1.NetworkPolicy](r.Objects)) == 0 {
			continue
		}
		withPolicies[r.Name] = true
		var extRedis, extPostgres int32 // the external datastores' ports; 0: none
		if strings.Contains(r.Name, "external-redis") || strings.Contains(r.Name, "external-both") || strings.HasPrefix(r.Name, "helm-external") {
			extRedis = 6379
			if r.Name == "kustomize-tests-external-redis" {
				extRedis = 6380 // its URL names another port
			}
		}
		if strings.Contains(r.Name, "external-postgres") || strings.Contains(r.Name, "external-both") || strings.HasPrefix(r.Name, "helm-external") {
			extPostgres = 5432
		}
		got := matrix(t, r)
		// kustomize (one deployment per namespace) takes every redis and postgresql pod of the
		// namespace for its own, so that a Bitnami chart's serve it; Helm takes only its
		// release's when it runs its own, and any by name when its datastores are elsewhere.
		bitnami := strings.HasPrefix(r.Name, "kustomize-") || r.Name == "helm-bitnami" || strings.HasPrefix(r.Name, "helm-external")
		want := expectedFlows(endpoints(t, r), edgeProxies(r.Name), extRedis, extPostgres, bitnami, strings.Contains(r.Name, "cloudnative-pg"))
		for f := range want {
			if !got[f] {
				t.Errorf("%s: needed flow denied: %s", r.Name, f)
			}
		}
		for f := range got {
			if !want[f] {
				t.Errorf("%s: unexpected flow allowed: %s", r.Name, f)
			}
		}
		for _, f := range deniedFlows {
			if got[f] {
				t.Errorf("%s: flow must be denied: %s", r.Name, f)
			}
		}
		if testing.Verbose() && (r.Name == "kustomize-overlays-prod" || r.Name == "helm-bitnami") {
			t.Logf("%s allows:\n  %s", r.Name, strings.Join(sortedFlows(got), "\n  "))
		}
	}
	for _, name := range []string{
		"kustomize-overlays-prod", "kustomize-tests-dev-all-components", "kustomize-tests-external-redis",
		"kustomize-tests-external-postgres", "kustomize-tests-external-both",
		"kustomize-tests-shared-gateway", "kustomize-tests-ingress-nginx",
		"helm-defaults", "helm-dev", "helm-prod", "helm-bitnami", "helm-external-url", "helm-external-secret",
		"helm-shared-gateway", "helm-ingress-nginx", "helm-cloudnative-pg",
	} {
		if !withPolicies[name] {
			t.Errorf("%s has no NetworkPolicies", name)
		}
	}
}

// TestNetworkPolicyMatrixCatchesMistakes proves the matrix reacts: dropping the worker's
// egress policy (the seed's mistake) must deny worker → Redis and PostgreSQL, and dropping
// default-deny and allow-dns must let Redis out.
func TestNetworkPolicyMatrixCatchesMistakes(t *testing.T) {
	r := target(t, "kustomize-overlays-prod")
	without := func(names ...string) renderedTarget {
		out := renderedTarget{Target: r.Target}
		for _, o := range r.Objects {
			if !(o.Kind == "NetworkPolicy" && slices.Contains(names, o.Name)) {
				out.Objects = append(out.Objects, o)
			}
		}
		if len(out.Objects) != len(r.Objects)-len(names) {
			t.Fatalf("not every NetworkPolicy of %v", names)
		}
		return out
	}
	noWorker := matrix(t, without("worker"))
	for _, f := range []flow{{"worker", "redis", 6379, corev1.ProtocolTCP}, {"worker", "postgres", 5432, corev1.ProtocolTCP}} {
		if noWorker[f] {
			t.Errorf("%s still allowed without the worker policy", f)
		}
	}
	// The datastores' policies only guard what comes in: default-deny and allow-dns (which
	// allows DNS alone) are what stop them from reaching out.
	probe := flow{"redis", "internet", 443, corev1.ProtocolTCP}
	if matrix(t, r)[probe] {
		t.Errorf("%s allowed with default-deny", probe)
	}
	if !matrix(t, without("default-deny", "allow-dns"))[probe] {
		t.Errorf("%s denied even without default-deny and allow-dns", probe)
	}
}

func sortedFlows(m map[flow]bool) []string {
	var out []string
	for f := range m {
		out = append(out, f.String())
	}
	sort.Strings(out)
	return out
}

// TestExternalDatastorePortsFromURL: the NetworkPolicies open the port the app connects to:
// the one in external.url (rediss://...:6380 opens 6380, not 6379), the scheme's default when
// the URL names none, and external.port with existingSecret.
func TestExternalDatastorePortsFromURL(t *testing.T) {
	cases := []struct {
		redis, postgres map[string]any
		want            []int32
	}{
		{map[string]any{"url": "rediss://:pw@redis.example.com:6380/0"}, map[string]any{"url": "postgres://u:pw@db.example.com:6543/voting"}, []int32{6380, 6543}},
		{map[string]any{"url": "redis://redis.example.com"}, map[string]any{"url": "postgres://u:pw@[2001:db8::5]/voting"}, []int32{6379, 5432}},
		{map[string]any{"existingSecret": "r", "port": 7000}, map[string]any{"existingSecret": "p", "port": 7001}, []int32{7000, 7001}},
	}
	for _, c := range cases {
		y, err := render.RenderHelm(root+"/deploy/helm/voting", nil, map[string]any{
			"redis":    map[string]any{"enabled": false, "external": c.redis},
			"postgres": map[string]any{"enabled": false, "external": c.postgres},
		})
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeStrict(y)
		if err != nil {
			t.Fatal(err)
		}
		ports := map[string][]int32{} // policy -> TCP ports of its egress rules
		for _, np := range ofKind[*networkingv1.NetworkPolicy](objs) {
			for _, e := range np.Spec.Egress {
				for _, p := range e.Ports {
					if p.Port != nil && p.Port.IntVal != 53 {
						ports[np.Name] = append(ports[np.Name], p.Port.IntVal)
					}
				}
			}
		}
		for name, want := range map[string][]int32{
			"voting-vote": {c.want[0]}, "voting-result": {c.want[1]}, "voting-worker": {c.want[0], c.want[1]},
		} {
			if fmt.Sprint(ports[name]) != fmt.Sprint(want) {
				t.Errorf("redis %v, postgres %v: %s egress ports %v, want %v", c.redis, c.postgres, name, ports[name], want)
			}
		}
	}
}

// TestKustomizeExternalPortsMatchURLs: where a kustomization gives an external datastore's URL
// (the test overlays do), its allow-external policy opens that URL's port.
func TestKustomizeExternalPortsMatchURLs(t *testing.T) {
	checked := 0
	for _, r := range renderAll(t) {
		for _, s := range ofKind[*corev1.Secret](r.Objects) {
			for prefix, def := range map[string]string{"voting-external-redis": "6379", "voting-external-postgres": "5432"} {
				if !strings.HasPrefix(s.Name, prefix+"-") {
					continue
				}
				u, err := url.Parse(string(s.Data["url"]))
				if err != nil {
					t.Fatalf("%s: %s: %v", r.Name, s.Name, err)
				}
				want := cmp.Or(u.Port(), def)
				policy := "allow-" + strings.TrimPrefix(prefix, "voting-")
				for _, np := range ofKind[*networkingv1.NetworkPolicy](r.Objects) {
					if np.Name != policy {
						continue
					}
					checked++
					if got := np.Spec.Egress[0].Ports[0].Port.String(); got != want {
						t.Errorf("%s: %s opens port %s, the URL in %s names %s", r.Name, policy, got, s.Name, want)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Errorf("no kustomization with an external datastore's URL and its policy")
	}
}

// TestTwoReleasesInOneNamespace renders the chart as two releases, "one" and "two", into one
// namespace beside a pod of another app: each release's policies select only its own pods
// (the other app's traffic is not theirs to deny), and no pod of one release reaches the
// other's datastores or app ports.
func TestTwoReleasesInOneNamespace(t *testing.T) {
	var objs []object
	var eps []endpoint
	for _, rel := range []string{"one", "two"} {
		y, err := render.RenderHelmRelease(root+"/deploy/helm/voting", rel, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		o, err := decodeStrict(y)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
		for _, p := range podTemplates(o) {
			var ports []corev1.ContainerPort
			for _, c := range p.Spec.Containers {
				ports = append(ports, c.Ports...)
			}
			eps = append(eps, endpoint{Name: rel + "/" + podName[p.Meta.Labels["app.kubernetes.io/component"]],
				Namespace: render.Namespace, Labels: p.Meta.Labels, Ports: ports})
		}
	}
	other := endpoint{Name: "other-app", Namespace: render.Namespace, Labels: map[string]string{"app": "other"},
		Ports: []corev1.ContainerPort{tcp(8080, "http")}}
	internet := endpoint{Name: "internet", IP: netip.MustParseAddr("93.184.215.14"), Ports: []corev1.ContainerPort{tcp(443, "https")}}
	policies := ofKind[*networkingv1.NetworkPolicy](objs)
	for _, np := range policies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if sel.Matches(labels.Set(other.Labels)) {
			t.Errorf("NetworkPolicy %s selects a pod of another app in the namespace (%v)", np.Name, sel)
		}
	}
	if !allows(t, policies, networkingv1.PolicyTypeEgress, other, internet, internet.Ports[0]) {
		t.Errorf("the other app's pod may not reach the internet: a release's policies took it over")
	}
	for _, src := range append(eps, other) {
		for _, dst := range eps {
			if strings.Split(src.Name, "/")[0] == strings.Split(dst.Name, "/")[0] {
				continue
			}
			for _, port := range dst.Ports {
				if port.Protocol == "" {
					port.Protocol = corev1.ProtocolTCP
				}
				if allows(t, policies, networkingv1.PolicyTypeEgress, src, dst, port) &&
					allows(t, policies, networkingv1.PolicyTypeIngress, dst, src, port) {
					t.Errorf("%s reaches %s:%d across releases", src.Name, dst.Name, port.ContainerPort)
				}
			}
		}
	}
}
