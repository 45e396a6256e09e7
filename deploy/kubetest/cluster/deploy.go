package cluster

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"

	"github.com/votingapp/voting/deploy/kubetest/render"
	"github.com/votingapp/voting/deploy/kubetest/supplychain"
)

// helmConfig is a Helm SDK configuration for ns on the checker's cluster.
func (k *Checker) helmConfig(ns string) (*action.Configuration, error) {
	settings := cli.New()
	settings.KubeConfig = k.Kubeconfig
	settings.SetNamespace(ns)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), ns, "secret", func(string, ...any) {}); err != nil {
		return nil, err
	}
	return cfg, nil
}

// DeployHelm is check 2 for the chart: `helm install --wait` with valueFiles into ns, every
// pod Ready and PVC Bound, then `helm test`.
func (k *Checker) DeployHelm(ctx context.Context, ns, name string, valueFiles []string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		if err := k.restrictedNamespace(ctx, ns); err != nil {
			return err
		}
		cfg, err := k.helmConfig(ns)
		if err != nil {
			return err
		}
		inst := action.NewInstall(cfg)
		inst.ReleaseName, inst.Namespace = name, ns
		chartPath, from := filepath.Join(k.Root, "deploy", "helm", "voting"), "deploy/helm/voting"
		if k.Chart != nil {
			if chartPath, err = supplychain.LocateChart(inst, *k.Chart, filepath.Join(k.Work, "helm-cache")); err != nil {
				return err
			}
			from = fmt.Sprintf("%s --version %s", k.Chart.URL(), k.Chart.Version)
		}
		chart, err := loader.Load(chartPath)
		if err != nil {
			return err
		}
		vals, err := render.LoadValues(valueFiles, nil)
		if err != nil {
			return err
		}
		inst.Wait, inst.Timeout = true, 6*time.Minute
		rel, err := inst.RunWithContext(ctx, chart, vals)
		if err != nil {
			return fmt.Errorf("helm install: %w", err)
		}
		var files []string
		for _, f := range valueFiles {
			files = append(files, "-f "+relPath(k.Root, f))
		}
		saw = append(saw, fmt.Sprintf("helm install %s %s %s: %s, revision %d, in %.0fs",
			name, from, strings.Join(files, " "), rel.Info.Status, rel.Version, time.Since(t).Seconds()))
		if err := k.servesApp(ctx, ns, &saw); err != nil {
			return err
		}
		rt := action.NewReleaseTesting(cfg)
		rt.Namespace, rt.Timeout = ns, 3*time.Minute
		trel, err := rt.Run(name)
		var logs bytes.Buffer
		if trel != nil {
			_ = rt.GetPodLogs(&logs, trel)
		}
		if err != nil {
			return fmt.Errorf("helm test: %w\n%s", err, logs.String())
		}
		for _, h := range trel.Hooks {
			for _, e := range h.Events {
				if e == release.HookTest {
					saw = append(saw, fmt.Sprintf("helm test: pod %s %s", h.Name, h.LastRun.Phase))
				}
			}
		}
		if l := strings.TrimSpace(logs.String()); l != "" {
			saw = append(saw, "helm test log: "+lastLines(l, 3))
		}
		// An upgrade reads the generated passwords and voter key back: none may change under
		// the running datastores and voters.
		before, err := k.secretData(ctx, ns)
		if err != nil {
			return err
		}
		up := action.NewUpgrade(cfg)
		up.Namespace, up.Wait, up.Timeout = ns, true, 6*time.Minute
		urel, err := up.RunWithContext(ctx, name, chart, vals)
		if err != nil {
			return fmt.Errorf("helm upgrade: %w", err)
		}
		after, err := k.secretData(ctx, ns)
		if err != nil {
			return err
		}
		if !maps.Equal(before, after) {
			return fmt.Errorf("helm upgrade changed the Secrets' data: %d entries before, %d after", len(before), len(after))
		}
		saw = append(saw, fmt.Sprintf("helm upgrade: revision %d, the %d generated Secret entries (passwords, voter key) unchanged", urel.Version, len(before)))
		return nil
	}()
	if err != nil {
		k.Diagnose(ctx, ns)
	}
	return k.result("2. Helm install: every pod Ready, every PVC Bound, helm test passes, an upgrade keeps the secrets", t, strings.Join(saw, "\n"), err)
}

// secretData returns every entry of the Secrets in ns, keyed "secret/key", that Helm did not
// write for its own bookkeeping.
func (k *Checker) secretData(ctx context.Context, ns string) (map[string]string, error) {
	var list corev1.SecretList
	if err := k.getJSON(ctx, &list, "-n", ns, "get", "secrets"); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, s := range list.Items {
		if s.Type == "helm.sh/release.v1" {
			continue
		}
		for key, v := range s.Data {
			m[s.Name+"/"+key] = string(v)
		}
	}
	return m, nil
}

// UninstallHelm removes the release and its namespace.
func (k *Checker) UninstallHelm(ctx context.Context, ns, release string) error {
	cfg, err := k.helmConfig(ns)
	if err != nil {
		return err
	}
	u := action.NewUninstall(cfg)
	u.Wait, u.Timeout = true, 3*time.Minute
	if _, err := u.Run(release); err != nil {
		return err
	}
	return k.deleteNamespace(ctx, ns)
}

// DeployKustomize is check 2 for kustomize: the kustomization dir rendered with the kustomize
// API (as kubectl apply -k would), applied, every pod Ready and PVC Bound.
func (k *Checker) DeployKustomize(ctx context.Context, ns, dir string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		y, err := render.RenderKustomize(dir)
		if err != nil {
			return err
		}
		f, err := k.writeFile("kustomize.yaml", string(y))
		if err != nil {
			return err
		}
		out, err := k.Kubectl(ctx, "apply", "--server-side", "-f", f)
		if err != nil {
			return err
		}
		saw = append(saw, fmt.Sprintf("kubectl apply --server-side of %s: %d objects", relPath(k.Root, dir), strings.Count(out, "\n")))
		return k.servesApp(ctx, ns, &saw)
	}()
	if err != nil {
		k.Diagnose(ctx, ns)
	}
	return k.result("2. kustomize "+relPath(k.Root, dir)+": every pod Ready, every PVC Bound", t, strings.Join(saw, "\n"), err)
}

// DeleteKustomize deletes what DeployKustomize applied, with its namespace.
func (k *Checker) DeleteKustomize(ctx context.Context, ns string) error {
	f := filepath.Join(k.Work, "kustomize.yaml")
	if _, err := os.Stat(f); err == nil {
		_, _ = k.Kubectl(ctx, "delete", "-f", f, "--ignore-not-found", "--wait=true", "--timeout=180s")
	}
	return k.deleteNamespace(ctx, ns)
}

// servesApp waits until every pod of ns is Ready, every PVC Bound, and the Gateway serves
// both pages, and notes what it saw.
func (k *Checker) servesApp(ctx context.Context, ns string, saw *[]string) error {
	s, err := k.waitReady(ctx, ns)
	*saw = append(*saw, s)
	if err != nil {
		return err
	}
	if s, err = k.memorySettings(ctx, ns); err != nil {
		return err
	}
	*saw = append(*saw, s)
	s, err = k.routesServe(ctx, ns)
	*saw = append(*saw, s)
	return err
}

func relPath(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
