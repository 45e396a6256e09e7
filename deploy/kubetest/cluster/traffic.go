package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// results is GET /api/results.
type results struct {
	Total    int64  `json:"total"`
	Instance string `json:"instance"` // the result replica that answered
	Options  []struct {
		ID    string `json:"id"`
		Count int64  `json:"count"`
	} `json:"options"`
}

func (r results) count(id string) int64 {
	for _, o := range r.Options {
		if o.ID == id {
			return o.Count
		}
	}
	return 0
}

func (r results) String() string {
	var parts []string
	for _, o := range r.Options {
		pct := 0.0
		if r.Total > 0 {
			pct = 100 * float64(o.Count) / float64(r.Total)
		}
		parts = append(parts, fmt.Sprintf("%s %d (%.2f%%)", o.ID, o.Count, pct))
	}
	return fmt.Sprintf("total %d: %s", r.Total, strings.Join(parts, ", "))
}

// gatewayClient sends every request to the Gateway's address, whatever the URL's host.
func (k *Checker) gatewayClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, k.Gateway)
		},
	}}
}

func (k *Checker) results(ctx context.Context, a *app) (results, error) {
	var r results
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.hosts["result"]+"/api/results", nil)
	resp, err := k.gatewayClient().Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("GET /api/results through the Gateway: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return r, json.Unmarshal(b, &r)
}

// loadgenReport is the part of `voting loadgen --json` the checks read.
type loadgenReport struct {
	Sent      int            `json:"sent"`
	Accepted  int            `json:"accepted"`
	Failed    int            `json:"failed"`
	ByStatus  map[string]int `json:"by_status"`
	ByOption  map[string]int `json:"accepted_by_option"`
	Retried   int            `json:"retried"`
	UnsureNew int            `json:"unsure_new"`
	Rate      float64        `json:"votes_per_second"`
	FirstErr  string         `json:"first_error"`
	Push      *struct {
		Clients  int   `json:"clients"`
		GotFinal int   `json:"clients_with_final_total"`
		Final    int64 `json:"final_total"`
		Messages int64 `json:"messages"`
		P95      int64 `json:"p95_ns"`
	} `json:"push"`
}

// loadgen runs `voting loadgen` on this machine against the Gateway.
func (k *Checker) loadgen(ctx context.Context, a *app, args ...string) (*loadgenReport, error) {
	all := append([]string{"loadgen", "--url", "http://" + a.hosts["vote"], "--connect-to", k.Gateway, "--json", "--quiet"}, args...)
	cmd := exec.CommandContext(ctx, k.Voting, all...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var rep loadgenReport
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return nil, fmt.Errorf("voting %s: %v (%v): %s", strings.Join(all, " "), err, jerr, out)
	}
	return &rep, err
}

// CheckSeed is check 3: through the Gateway, the original's seed (3000 votes, 2000 a and 1000
// b) read back as 67/33 from /api/results and by WebSocket clients on /ws, which receive the
// updates live while the votes go in.
func (k *Checker) CheckSeed(ctx context.Context, ns string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		a, err := k.discover(ctx, ns)
		if err != nil {
			return err
		}
		saw = append(saw, fmt.Sprintf("Gateway %s: vote at Host %s, result at Host %s", k.Gateway, a.hosts["vote"], a.hosts["result"]))
		// What was there before (helm test casts one vote) is counted on top.
		base, err := k.results(ctx, a)
		if err != nil {
			return err
		}
		const clients = 10
		rep, err := k.loadgen(ctx, a, "--seed", "--concurrency", "20", "--ws-url", "http://"+a.hosts["result"], "--ws-clients", fmt.Sprint(clients), "--ws-wait", "30s")
		if rep != nil {
			saw = append(saw, fmt.Sprintf("loadgen --seed: %d sent, %d accepted (a %d, b %d), %d failed, %.0f votes/s", rep.Sent, rep.Accepted, rep.ByOption["a"], rep.ByOption["b"], rep.Failed, rep.Rate))
			if rep.Failed > 0 {
				saw = append(saw, fmt.Sprintf("loadgen answers %v, first error: %s", rep.ByStatus, rep.FirstErr))
			}
		}
		if err != nil {
			return err
		}
		if rep.Accepted != 3000 || rep.ByOption["a"] != 2000 || rep.ByOption["b"] != 1000 {
			return fmt.Errorf("want 3000 accepted, 2000 a and 1000 b")
		}
		p := rep.Push
		if p == nil {
			return fmt.Errorf("no WebSocket report")
		}
		saw = append(saw, fmt.Sprintf("WebSocket /ws through the Gateway: %d clients, %d saw the final total %d live (%d messages during the votes, push p95 %.1f ms)",
			p.Clients, p.GotFinal, p.Final, p.Messages, float64(p.P95)/1e6))
		if p.GotFinal != clients || p.Final != base.Total+3000 || p.Messages < clients*2 {
			return fmt.Errorf("want all %d clients to see %d with updates as the votes went in", clients, base.Total+3000)
		}
		var r results
		err = poll(ctx, "/api/results through the Gateway reads 3000", time.Minute, time.Second, func() error {
			var err error
			if r, err = k.results(ctx, a); err != nil {
				return err
			}
			if r.Total-base.Total != 3000 || r.count("a")-base.count("a") != 2000 || r.count("b")-base.count("b") != 1000 {
				return fmt.Errorf("got %s, %s before", r, base)
			}
			return nil
		})
		saw = append(saw, fmt.Sprintf("GET /api/results through the Gateway: %s (%s before the seed)", r, base))
		return err
	}()
	return k.result("3. through the Gateway: the seed's 3000 votes read back 67/33, live on /ws", t, strings.Join(saw, "\n"), err)
}

// watchers are WebSocket clients on /ws through the Gateway that reconnect when the socket
// drops, as the results page does, and remember the last total each saw.
type watchers struct {
	totals     []atomic.Int64
	got        []atomic.Bool            // the client has had its first message
	instances  []atomic.Pointer[string] // the result replica of the client's last message
	reconnects atomic.Int64
	dialErr    atomic.Pointer[string] // the last failed dial's error, for the check's message
	wg         sync.WaitGroup
	cancel     context.CancelFunc
}

func (k *Checker) watch(ctx context.Context, host string, n int) *watchers {
	ctx, cancel := context.WithCancel(ctx)
	w := &watchers{totals: make([]atomic.Int64, n), got: make([]atomic.Bool, n), instances: make([]atomic.Pointer[string], n), cancel: cancel}
	d := ws.Dialer{Timeout: 5 * time.Second, NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, k.Gateway)
	}}
	for i := range n {
		w.wg.Go(func() {
			for first := true; ctx.Err() == nil; first = false {
				if !first {
					w.reconnects.Add(1)
					select {
					case <-ctx.Done():
						return
					case <-time.After(500 * time.Millisecond):
					}
				}
				conn, br, _, err := d.Dial(ctx, "ws://"+host+"/ws")
				if err != nil {
					e := err.Error()
					w.dialErr.Store(&e)
					continue
				}
				// The server writes its first snapshot right after its answer; when both came
				// in one read, br holds the snapshot (and reads on from conn after it).
				rw := io.ReadWriter(conn)
				if br != nil {
					rw = struct {
						io.Reader
						io.Writer
					}{br, conn}
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				for {
					msg, err := wsutil.ReadServerText(rw)
					if err != nil {
						break
					}
					var r results
					if json.Unmarshal(msg, &r) == nil {
						w.totals[i].Store(r.Total)
						w.instances[i].Store(&r.Instance)
						w.got[i].Store(true)
					}
				}
				stop()
				conn.Close()
			}
		})
	}
	return w
}

func (w *watchers) lastDialErr() string {
	if e := w.dialErr.Load(); e != nil {
		return *e
	}
	return "none"
}

func (w *watchers) stop() {
	w.cancel()
	w.wg.Wait()
}

// split counts the clients served by each result replica, as "pod: n" in name order.
func (w *watchers) split() []string {
	by := map[string]int{}
	for i := range w.instances {
		if p := w.instances[i].Load(); p != nil {
			by[*p]++
		}
	}
	var out []string
	for name, n := range by {
		out = append(out, fmt.Sprintf("%s: %d", name, n))
	}
	sort.Strings(out)
	return out
}

// seeing counts the clients whose last total is want.
func (w *watchers) seeing(want int64) int {
	n := 0
	for i := range w.totals {
		if w.totals[i].Load() == want {
			n++
		}
	}
	return n
}

// storedVotes reads every row of the votes table from the PostgreSQL pod: voter id -> option.
func (k *Checker) storedVotes(ctx context.Context, a *app) (map[string]string, error) {
	pod := a.pods["postgres"][0].Name
	out, err := k.Kubectl(ctx, "-n", a.ns, "exec", pod, "--", "sh", "-c",
		`psql -U "$POSTGRES_USER" -d "${POSTGRES_DB:-$POSTGRES_USER}" -At -F ' ' -c 'SELECT id, vote FROM votes'`)
	if err != nil {
		return nil, err
	}
	return voterLines(out), nil
}

// readVoters reads loadgen's --voters-out file.
func readVoters(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	return voterLines(string(b)), err
}

// voterLines parses "voter_id option" lines, as psql -At -F ' ' and loadgen --voters-out
// write them.
func voterLines(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// CheckFaults is check 5: under a bounded load through the Gateway (every answer recorded),
// a worker pod is deleted, new vote and result revisions roll out, and the PostgreSQL pod is
// restarted. Afterwards every vote that got a 2xx is in the store, and the WebSocket clients
// that were open reconnected and show the final count.
func (k *Checker) CheckFaults(ctx context.Context, ns string) bool {
	t := time.Now()
	var saw []string
	err := func() error {
		a, err := k.discover(ctx, ns)
		if err != nil {
			return err
		}
		before, err := k.results(ctx, a)
		if err != nil {
			return err
		}
		const clients = 20
		w := k.watch(ctx, a.hosts["result"], clients)
		defer w.stop()
		if err := poll(ctx, "WebSocket clients connected", 60*time.Second, 200*time.Millisecond, func() error {
			n := 0
			for i := range w.got {
				if w.got[i].Load() {
					n++
				}
			}
			if n != clients {
				return fmt.Errorf("%d of %d clients have their first snapshot (%d reconnects; last failed dial: %s)", n, clients, w.reconnects.Load(), w.lastDialErr())
			}
			return nil
		}); err != nil {
			return err
		}
		// The clients go through the Gateway to the result Service: with several replicas,
		// each takes a share, and none needs the others (no sticky sessions).
		split := w.split()
		saw = append(saw, fmt.Sprintf("%d WebSocket clients through the Gateway, by result pod: %s", clients, strings.Join(split, ", ")))
		if replicas := len(a.pods["result"]); replicas > 1 && len(split) < 2 {
			return fmt.Errorf("%d result pods, but every WebSocket client is on one", replicas)
		}
		voters := k.Work + "/fault-voters.txt"
		type lg struct {
			rep *loadgenReport
			err error
		}
		done := make(chan lg, 1)
		// About 90 s of votes at 60/s, each answer recorded; a 5xx or a broken connection is
		// retried for up to 60 s as a person would, so the count of accepted votes is exact.
		go func() {
			rep, err := k.loadgen(ctx, a, "--votes", "5400", "--rate", "60", "--concurrency", "32", "--retry", "60s",
				"--timeout", "5s", "--max-duration", "5m", "--voters-out", voters)
			done <- lg{rep, err}
		}()
		step := func(at time.Duration, what string, f func() error) error {
			time.Sleep(time.Until(t.Add(at)))
			s := time.Now()
			if err := f(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			saw = append(saw, fmt.Sprintf("at %2.0fs: %s (%.1fs)", time.Since(t).Seconds(), what, time.Since(s).Seconds()))
			return nil
		}
		worker := a.pods["worker"][0].Name
		postgres := a.pods["postgres"][0].Name
		steps := []struct {
			at   time.Duration
			what string
			f    func() error
		}{
			{10 * time.Second, "deleted worker pod " + worker, func() error {
				_, err := k.Kubectl(ctx, "-n", ns, "delete", "pod", worker, "--wait=false")
				return err
			}},
			{20 * time.Second, "rolled out new vote and result revisions", func() error {
				for _, d := range []string{"vote", "result"} {
					if _, err := k.Kubectl(ctx, "-n", ns, "rollout", "restart", "deployment/"+deploymentName(a, d)); err != nil {
						return err
					}
				}
				for _, d := range []string{"vote", "result"} {
					if _, err := k.Kubectl(ctx, "-n", ns, "rollout", "status", "deployment/"+deploymentName(a, d), "--timeout=180s"); err != nil {
						return err
					}
				}
				return nil
			}},
			{55 * time.Second, "restarted the PostgreSQL pod " + postgres, func() error {
				if _, err := k.Kubectl(ctx, "-n", ns, "delete", "pod", postgres, "--wait=true", "--timeout=120s"); err != nil {
					return err
				}
				return poll(ctx, postgres+" Ready again", 3*time.Minute, time.Second, func() error {
					_, err := k.Kubectl(ctx, "-n", ns, "wait", "--for=condition=Ready", "pod/"+postgres, "--timeout=5s")
					return err
				})
			}},
		}
		for _, s := range steps {
			if err := step(s.at, s.what, s.f); err != nil {
				return err
			}
		}
		res := <-done
		if res.rep == nil {
			return res.err
		}
		rep := res.rep
		saw = append(saw, fmt.Sprintf("loadgen: %d sent, %d accepted, %d failed, %d retried, answers %v", rep.Sent, rep.Accepted, rep.Failed, rep.Retried, rep.ByStatus))
		if rep.Accepted == 0 {
			return fmt.Errorf("no vote accepted: %v", res.err)
		}
		accepted, err := readVoters(voters)
		if err != nil {
			return err
		}
		// The worker drains what the queue holds; then every accepted vote must be stored.
		a, err = k.discover(ctx, ns)
		if err != nil {
			return err
		}
		var lost []string
		var stored map[string]string
		err = poll(ctx, "every accepted vote in the store", 2*time.Minute, 2*time.Second, func() error {
			var err error
			if stored, err = k.storedVotes(ctx, a); err != nil {
				return err
			}
			lost = lost[:0]
			for v := range accepted {
				if _, ok := stored[storeID(v)]; !ok {
					lost = append(lost, v)
				}
			}
			if len(lost) > 0 {
				return fmt.Errorf("%d accepted votes not (yet) in the store", len(lost))
			}
			return nil
		})
		sort.Strings(lost)
		saw = append(saw, fmt.Sprintf("store: %d rows (%d before the load); lost: %d of %d accepted", len(stored), before.Total, len(lost), len(accepted)))
		if err != nil {
			if len(lost) > 5 {
				lost = lost[:5]
			}
			return fmt.Errorf("%w; first: %v", err, lost)
		}
		final, err := k.results(ctx, a)
		if err != nil {
			return err
		}
		if final.Total != int64(len(stored)) {
			return fmt.Errorf("/api/results total %d, store %d rows", final.Total, len(stored))
		}
		err = poll(ctx, "every WebSocket client shows the final count", time.Minute, time.Second, func() error {
			if n := w.seeing(final.Total); n != clients {
				return fmt.Errorf("%d of %d clients show %d", n, clients, final.Total)
			}
			return nil
		})
		saw = append(saw, fmt.Sprintf("WebSocket clients: %d of %d show the final total %d after %d reconnects (by result pod: %s); /api/results %s",
			w.seeing(final.Total), clients, final.Total, w.reconnects.Load(), strings.Join(w.split(), ", "), final))
		if err != nil {
			return err
		}
		if w.reconnects.Load() < clients {
			return fmt.Errorf("the result rollout should have made every client reconnect at least once; %d reconnects", w.reconnects.Load())
		}
		return nil
	}()
	if err != nil {
		k.Diagnose(ctx, ns)
	}
	return k.result("5. faults under load: no accepted vote lost, WebSocket clients reconnected", t, strings.Join(saw, "\n"), err)
}

// storeID is the voter id the store keeps for the cookie value loadgen was given.
func storeID(cookie string) string { return cookie }

// deploymentName is the Deployment whose pods have the role (the chart prefixes its names).
func deploymentName(a *app, role string) string {
	for _, ref := range a.pods[role][0].OwnerReferences {
		if ref.Kind == "ReplicaSet" {
			if i := strings.LastIndex(ref.Name, "-"); i > 0 {
				return ref.Name[:i]
			}
		}
	}
	return role
}
