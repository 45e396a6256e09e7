package browsertest

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/proctest"
)

var updateScreenshots = flag.Bool("update-screenshots", os.Getenv("VOTING_UPDATE_SCREENSHOTS") != "",
	"write the screenshots to docs/screenshots (also VOTING_UPDATE_SCREENSHOTS=1)")

// chromium is the browser binary, "" when there is none; binary is the `voting` binary built
// for this run.
var chromium, binary string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	chromium = findChromium()
	if chromium != "" && !testing.Short() {
		dir, err := os.MkdirTemp("", "voting-browsertest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// The real binary, so the pages are tested with exactly the wiring, middleware and
		// Content-Security-Policy that people get.
		if binary, err = proctest.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

func findChromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requireBrowser skips the test when there is no Chromium, or fails it under CI=true, where
// a missing browser means the tests did not run, which must not pass for a success.
func requireBrowser(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests are not short")
	}
	if chromium != "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium: set CHROMIUM or run scripts/ensure-chromium (`make test` does)")
	}
	t.Skip("no Chromium: set CHROMIUM or run scripts/ensure-chromium")
}

// app is a `voting all` process on loopback ports chosen by the test. Its votes live in
// SQLite in a directory of the test, so a restart on the same ports keeps them.
type app struct {
	t                         *testing.T
	dataDir                   string
	voteAddr, resultAddr, adm string
	args                      []string // more flags of `voting all`
	command                   []string // instead of `voting all` and its flags: another subcommand, whole
	cmd                       *exec.Cmd
	exited                    chan struct{}
	logs                      *proctest.Buffer
}

// startApp starts `voting all` with the flags every test needs, then args.
func startApp(t *testing.T, args ...string) *app {
	t.Helper()
	requireBrowser(t) // the binary is built only when there is a browser to test it with
	a := &app{t: t, dataDir: t.TempDir(), logs: &proctest.Buffer{}, args: args}
	a.voteAddr, a.resultAddr, a.adm = proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t)
	a.start()
	t.Cleanup(func() {
		a.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("voting logs:\n%s", a.logs)
		}
	})
	return a
}

// start runs the binary and waits until both pages answer.
func (a *app) start() {
	a.t.Helper()
	args := a.command
	if args == nil {
		args = append([]string{"all", "--data-dir=" + a.dataDir, "--log-format=text", "--log-level=debug",
			"--vote-addr=" + a.voteAddr, "--result-addr=" + a.resultAddr, "--admin-addr=" + a.adm}, a.args...)
	}
	a.cmd = exec.Command(binary, args...)
	a.cmd.Env = append(os.Environ(), "VOTING_OPTIONS=a=Cats,b=Dogs")
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(a.cmd, a.exited)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-a.exited:
			a.t.Fatalf("voting exited before it was ready; logs:\n%s", a.logs)
		default:
		}
		// Both pages answer, and the results have their first tally. (Not /readyz: its
		// checks run on an interval, which would add that interval to every start.)
		if (a.voteAddr == "" || ok(a.voteURL())) && ok(a.resultURL()+"api/results") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("voting did not answer within 20s; logs:\n%s", a.logs)
}

func ok(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop sends sig and waits for the process to exit.
func (a *app) stop(sig syscall.Signal) {
	a.t.Helper()
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
		a.t.Errorf("voting did not stop within 15s of %v", sig)
	}
}

func (a *app) voteURL() string   { return "http://" + a.voteAddr + "/" }
func (a *app) resultURL() string { return "http://" + a.resultAddr + "/" }

// postVote votes as a new voter (no cookie) with a form POST, as the original's seed does.
func (a *app) postVote(option string) {
	a.t.Helper()
	resp, err := http.PostForm(a.voteURL(), url.Values{"vote": {option}})
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("vote %s: %s", option, resp.Status)
	}
}
