package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// CheckHPA is check 6: under load the vote Deployment's HPA scales it up on metrics-server's
// CPU figures, and back down to its minimum once the load stops.
func (k *Checker) CheckHPA(ctx context.Context, ns string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		a, err := k.discover(ctx, ns)
		if err != nil {
			return err
		}
		vote := deploymentName(a, "vote")
		var hpas autoscalingv2.HorizontalPodAutoscalerList
		if err := k.getJSON(ctx, &hpas, "-n", ns, "get", "hpa"); err != nil {
			return err
		}
		var hpa *autoscalingv2.HorizontalPodAutoscaler
		for i, h := range hpas.Items {
			if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == vote {
				hpa = &hpas.Items[i]
			}
		}
		if hpa == nil {
			return fmt.Errorf("no HPA scales deployment/%s", vote)
		}
		min := int32(1)
		if hpa.Spec.MinReplicas != nil {
			min = *hpa.Spec.MinReplicas
		}
		saw = append(saw, fmt.Sprintf("HPA %s: deployment/%s, %d to %d replicas, target %s", hpa.Name, vote, min, hpa.Spec.MaxReplicas, targets(hpa)))
		get := func() (*autoscalingv2.HorizontalPodAutoscaler, error) {
			var h autoscalingv2.HorizontalPodAutoscaler
			return &h, k.getJSON(ctx, &h, "-n", ns, "get", "hpa", hpa.Name)
		}
		// From the minimum: an earlier check's load may have scaled it up already.
		if err := poll(ctx, "vote at its minimum before the load", 4*time.Minute, 3*time.Second, func() error {
			h, err := get()
			if err != nil {
				return err
			}
			if h.Status.CurrentReplicas != min {
				return fmt.Errorf("replicas %d", h.Status.CurrentReplicas)
			}
			return nil
		}); err != nil {
			return err
		}
		saw = append(saw, fmt.Sprintf("before the load: %d replicas", min))
		loadCtx, stopLoad := context.WithCancel(ctx)
		defer stopLoad()
		loadDone := make(chan *loadgenReport, 1)
		go func() {
			rep, _ := k.loadgen(loadCtx, a, "--votes", "2000000", "--concurrency", "48", "--raw", "--max-duration", "4m", "--timeout", "5s")
			loadDone <- rep
		}()
		up := time.Now()
		var peak int32
		err = poll(ctx, "the HPA scales vote up", 4*time.Minute, 3*time.Second, func() error {
			h, err := get()
			if err != nil {
				return err
			}
			if h.Status.DesiredReplicas > peak {
				peak = h.Status.DesiredReplicas
				saw = append(saw, fmt.Sprintf("after %3.0fs of load: metrics %s, replicas %d → desired %d",
					time.Since(up).Seconds(), current(h), h.Status.CurrentReplicas, h.Status.DesiredReplicas))
			}
			if h.Status.CurrentReplicas <= min || h.Status.DesiredReplicas <= min {
				return fmt.Errorf("replicas %d, desired %d (metrics %s)", h.Status.CurrentReplicas, h.Status.DesiredReplicas, current(h))
			}
			return nil
		})
		stopLoad()
		if rep := <-loadDone; rep != nil {
			saw = append(saw, fmt.Sprintf("load: %d votes through the Gateway, %.0f votes/s, answers %v", rep.Sent, rep.Rate, rep.ByStatus))
		}
		if err != nil {
			return err
		}
		down := time.Now()
		err = poll(ctx, "the HPA scales vote back down", 5*time.Minute, 3*time.Second, func() error {
			h, err := get()
			if err != nil {
				return err
			}
			if h.Status.CurrentReplicas != min {
				return fmt.Errorf("replicas %d, desired %d (metrics %s)", h.Status.CurrentReplicas, h.Status.DesiredReplicas, current(h))
			}
			saw = append(saw, fmt.Sprintf("%.0fs after the load stopped: metrics %s, replicas back to %d", time.Since(down).Seconds(), current(h), h.Status.CurrentReplicas))
			return nil
		})
		return err
	}()
	return k.result("6. the vote HPA scales up under load and back down after", t, strings.Join(saw, "\n"), err)
}

func targets(h *autoscalingv2.HorizontalPodAutoscaler) string {
	var s []string
	for _, m := range h.Spec.Metrics {
		if m.Resource != nil && m.Resource.Target.AverageUtilization != nil {
			s = append(s, fmt.Sprintf("%s %d%% of requests", m.Resource.Name, *m.Resource.Target.AverageUtilization))
		}
	}
	return strings.Join(s, ", ")
}

func current(h *autoscalingv2.HorizontalPodAutoscaler) string {
	var s []string
	for _, m := range h.Status.CurrentMetrics {
		if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
			s = append(s, fmt.Sprintf("%s %d%%", m.Resource.Name, *m.Resource.Current.AverageUtilization))
		}
	}
	if len(s) == 0 {
		return "none yet"
	}
	return strings.Join(s, ", ")
}
