package kubetest

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	rolloutsv1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	cnpgv1 "github.com/cloudnative-pg/api/pkg/api/v1"
	policyv1beta1 "github.com/sigstore/policy-controller/pkg/apis/policy/v1beta1"

	"github.com/votingapp/voting/deploy/kubetest/render"
)

// root is the repository's top directory, seen from this package.
var root = filepath.Join("..", "..")

// decodeScheme knows the built-in Kubernetes types, the Gateway API v1 types (Gateway,
// HTTPRoute, ...), CloudNativePG's (Cluster), Argo Rollouts' (Rollout, AnalysisTemplate) and
// sigstore policy-controller's (ClusterImagePolicy v1beta1), whose CRDs are not part of
// Kubernetes itself.
var decodeScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	utilruntime.Must(cnpgv1.AddToScheme(s))
	utilruntime.Must(rolloutsv1alpha1.AddToScheme(s))
	utilruntime.Must(policyv1beta1.AddToScheme(s))
	return s
}()

// strictDecoder decodes YAML into the typed Kubernetes API objects and fails on unknown and
// duplicate fields, which the API server would drop silently (or reject, with
// --validate=strict).
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, decodeScheme, decodeScheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// object is one decoded object with its kind and name, for messages.
type object struct {
	Kind, Name, Namespace string
	Obj                   runtime.Object
}

func (o object) String() string { return o.Kind + "/" + o.Name }

// renderedTarget is one target with its decoded objects.
type renderedTarget struct {
	render.Target
	Objects []object
}

var (
	renderOnce sync.Once
	rendered   []renderedTarget
	renderErr  error
)

// renderAll renders and strictly decodes every target once per test binary.
func renderAll(t *testing.T) []renderedTarget {
	t.Helper()
	renderOnce.Do(func() {
		targets, err := render.Targets(root)
		if err != nil {
			renderErr = err
			return
		}
		var errs []error
		for _, tg := range targets {
			out, err := tg.Render()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", tg.Name, err))
				continue
			}
			objs, err := decodeStrict(out)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", tg.Name, err))
				continue
			}
			rendered = append(rendered, renderedTarget{Target: tg, Objects: objs})
		}
		renderErr = errors.Join(errs...)
	})
	if renderErr != nil {
		t.Fatal(renderErr)
	}
	return rendered
}

// target returns the rendered target of that name.
func target(t *testing.T, name string) renderedTarget {
	t.Helper()
	for _, r := range renderAll(t) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no target %q", name)
	return renderedTarget{}
}

// decodeStrict splits a YAML stream and decodes each document into its API type.
func decodeStrict(data []byte) ([]object, error) {
	docs, err := render.Documents(data)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, doc := range docs {
		if isEmptyDoc(doc) {
			continue
		}
		obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", firstLines(doc), err)
		}
		acc, err := metaOf(obj)
		if err != nil {
			return nil, err
		}
		objs = append(objs, object{Kind: gvk.Kind, Name: acc.Name, Namespace: acc.Namespace, Obj: obj})
	}
	if len(objs) == 0 {
		return nil, errors.New("no objects rendered")
	}
	return objs, nil
}

func isEmptyDoc(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

func firstLines(doc []byte) string {
	lines := strings.Split(strings.TrimSpace(string(doc)), "\n")
	if len(lines) > 6 {
		lines = lines[:6]
	}
	return strings.Join(lines, " | ")
}

func metaOf(obj runtime.Object) (*metav1.ObjectMeta, error) {
	type metaObject interface{ GetObjectMeta() metav1.Object }
	m, ok := obj.(metaObject)
	if !ok {
		return nil, fmt.Errorf("%T has no metadata", obj)
	}
	om, ok := m.GetObjectMeta().(*metav1.ObjectMeta)
	if !ok {
		return nil, fmt.Errorf("%T: unexpected metadata type", obj)
	}
	return om, nil
}

// podTemplate is a pod as a workload would create it.
type podTemplate struct {
	Owner     string // e.g. "Deployment/vote"
	Namespace string
	Meta      metav1.ObjectMeta
	Spec      corev1.PodSpec
}

// podTemplates returns the pod templates of every workload (and every bare Pod).
func podTemplates(objs []object) []podTemplate {
	var pods []podTemplate
	for _, o := range objs {
		var tpl *corev1.PodTemplateSpec
		switch w := o.Obj.(type) {
		case *appsv1.Deployment:
			tpl = &w.Spec.Template
		case *appsv1.StatefulSet:
			tpl = &w.Spec.Template
		case *appsv1.DaemonSet:
			tpl = &w.Spec.Template
		case *batchv1.Job:
			tpl = &w.Spec.Template
		case *batchv1.CronJob:
			tpl = &w.Spec.JobTemplate.Spec.Template
		case *rolloutsv1alpha1.Rollout: // components/argo-rollouts: vote's pods
			tpl = &w.Spec.Template
		case *corev1.Pod:
			tpl = &corev1.PodTemplateSpec{ObjectMeta: w.ObjectMeta, Spec: w.Spec}
		default:
			continue
		}
		pods = append(pods, podTemplate{Owner: o.String(), Namespace: o.Namespace, Meta: tpl.ObjectMeta, Spec: tpl.Spec})
	}
	return pods
}

// ofKind returns the objects of one kind, typed.
func ofKind[T runtime.Object](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// appComponents are the values of app.kubernetes.io/component on the app's own pods.
var appComponents = []string{"vote", "result", "worker"}

// isAppImage tells whether a container runs the voting image.
func isAppImage(image string) bool {
	return strings.HasPrefix(image, "ghcr.io/votingapp/voting:") || image == "ghcr.io/votingapp/voting"
}
