package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestVoteFaults: `voting all` started with a share of vote errors on (a drill): the page says
// so, the metric shows it, the errors are 503s, and no accepted vote is lost (loadgen
// --verify audits every voter); switched off on the admin port, every vote goes through again.
func TestVoteFaults(t *testing.T) {
	dir := t.TempDir()
	app := startApp(t, nil, []string{"vote", "result", "admin"},
		append([]string{"all", "--data-dir=" + dir, "--poll-interval=100ms", "--fault-vote-error-ratio=0.3"}, loopback...)...)
	app.waitReady()
	if page := get(t, app.url("vote")+"/"); !strings.Contains(page, "A drill is on: 30% of votes are answered with an error on purpose") {
		t.Errorf("the vote page does not say the drill is on:\n%s", page)
	}
	if m := get(t, app.url("admin")+"/metrics"); !strings.Contains(m, `voting_fault_active{fault="vote-error-ratio"} 0.3`) {
		t.Errorf("no voting_fault_active for the fault in /metrics")
	}
	code, stdout, stderr := runVoting("loadgen", "--url="+app.url("vote"), "--votes=300", "--verify", "--result-url="+app.url("result"), "--data-dir="+dir)
	// lost 0: every accepted vote counted; none of the injected 503s is stored.
	if code != 0 || !strings.Contains(stdout, "lost 0, extra 0") || !strings.Contains(stdout, "503=") || !strings.Contains(stdout, "0 stored votes are ones whose answer was lost") {
		t.Fatalf("loadgen --verify with 30%% injected errors: exit %d, want 0 with 503s and lost 0, extra 0:\n%s%s", code, stdout, stderr)
	}
	t.Logf("with the drill on:\n%s", stdout)

	resp, err := http.PostForm(app.url("admin")+"/faults", url.Values{"vote-error-ratio": {"0"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"vote-error-ratio":"0"`) {
		t.Fatalf("POST /faults vote-error-ratio=0: %s %s", resp.Status, b)
	}
	if page := get(t, app.url("vote")+"/"); strings.Contains(page, "A drill is on") {
		t.Error("the vote page still says a drill is on")
	}
	code, stdout, stderr = runVoting("loadgen", "--url="+app.url("vote"), "--votes=50", "--verify", "--result-url="+app.url("result"), "--data-dir="+dir)
	if code != 0 || !strings.Contains(stdout, "cast 50, accepted 50, counted 50, lost 0, extra 0") {
		t.Fatalf("loadgen --verify with the drill off: exit %d:\n%s%s", code, stdout, stderr)
	}
	if !app.logs.contains(`"msg":"fault changed"`, `"fault":"vote-error-ratio"`, `"to":"0"`) {
		t.Error("no log line for the fault switched off")
	}
	// The public port does not serve the switches.
	if resp, err := http.PostForm(app.url("vote")+"/faults", url.Values{"vote-error-ratio": {"1"}}); err != nil || resp.StatusCode == http.StatusOK {
		t.Errorf("POST /faults on the public port: %v %v; want it refused", resp.Status, err)
	}
}

// TestWorkerStallOnSplitServices: a worker started with its stall fault on, on Redis and
// PostgreSQL: votes wait, the results page's pipeline says no vote is recorded while they
// wait and shows the worker's drill; switched off on the worker's admin port, every vote is
// counted and the page says counting is up to date.
func TestWorkerStallOnSplitServices(t *testing.T) {
	s := newTestServers(t)
	if code, stdout, stderr := runVoting("migrate", s.flags()[1]); code != 0 {
		t.Fatalf("migrate: exit %d: %s%s", code, stdout, stderr)
	}
	w := startApp(t, nil, []string{"admin"}, append([]string{"worker", "--admin-addr=127.0.0.1:0", "--fault-worker-stall=true"}, s.flags()...)...)
	v := startApp(t, nil, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[0], s.flags()[2], voterKeyFlag(t))
	r := startApp(t, nil, []string{"result", "admin"}, "result", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--poll-interval=100ms", s.flags()[1])
	for _, a := range []*testApp{w, v, r} {
		a.waitReady()
	}
	if code, stdout, stderr := runVoting("loadgen", "--url="+v.url("vote"), "--votes=20", "--quiet"); code != 0 {
		t.Fatalf("loadgen: exit %d: %s%s", code, stdout, stderr)
	}
	type snap struct {
		Total    int64
		Pipeline struct{ State, Message string }
		Drills   []string
	}
	read := func() snap {
		var x snap
		if err := json.Unmarshal([]byte(get(t, r.url("result")+"/api/results")), &x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	waitSnap := func(what string, ok func(snap) bool) snap {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		x := read()
		for ; !ok(x); x = read() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, x)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return x
	}
	x := waitSnap("the stalled pipeline", func(x snap) bool { return x.Pipeline.State == "stalled" && len(x.Drills) == 1 })
	if x.Total != 0 || x.Drills[0] != "A drill is on in a worker: it has stopped taking votes from the queue." ||
		!strings.HasPrefix(x.Pipeline.Message, "No vote has been recorded since they started, and 20 votes are waiting") {
		t.Fatalf("with the worker stalled: %+v", x)
	}
	if page := get(t, r.url("result")+"/"); !strings.Contains(page, "it has stopped taking votes from the queue") || !strings.Contains(page, `data-state="stalled"`) {
		t.Error("the results page does not show the stall")
	}
	resp, err := http.PostForm(w.url("admin")+"/faults", url.Values{"worker-stall": {"false"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitSnap("every vote counted, counting up to date", func(x snap) bool {
		return x.Total == 20 && x.Pipeline.State == "ok" && len(x.Drills) == 0
	})
}
