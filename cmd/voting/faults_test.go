package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
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
