package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/loadgen"
	"github.com/votingapp/voting/internal/proctest"
	"github.com/votingapp/voting/internal/voting"
)

// testApp is one `voting` subcommand running in this test process through run, as main
// would run it, on ports the kernel picked.
type testApp struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan int
	logs   *logWriter
}

// startApp runs `voting args...` with env as its whole environment, waits until it listens
// on every server in want (names from the "listening" log lines), and stops it at cleanup.
func startApp(t *testing.T, env map[string]string, want []string, args ...string) *testApp {
	t.Helper()
	return startAppWith(t, &cmdEnv{getenv: func(k string) string { return env[k] }}, want, args...)
}

// startAppWith is startApp with the cmdEnv given (for its tracing); its output is set here.
func startAppWith(t *testing.T, env *cmdEnv, want []string, args ...string) *testApp {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &testApp{t: t, cancel: cancel, done: make(chan int, 1), logs: newLogWriter()}
	env.stdout, env.stderr = io.Discard, a.logs
	go func() { a.done <- runWith(ctx, append([]string{"voting"}, args...), env) }()
	t.Cleanup(func() { a.stop() })
	a.waitListening(want, args[0])
	return a
}

// waitListening waits until the app listens on every server in want (names from the
// "listening" log lines); what names it in failures.
func (a *testApp) waitListening(want []string, what string) {
	a.t.Helper()
	deadline := time.After(20 * time.Second)
	for _, name := range want {
		select {
		case <-a.logs.listening(name):
		case code := <-a.done:
			a.done <- code
			a.t.Fatalf("voting %s exited with %d before listening on %s; logs:\n%s", what, code, name, a.logs)
		case <-deadline:
			a.t.Fatalf("voting %s did not listen on %s in time; logs:\n%s", what, name, a.logs)
		}
	}
}

// url returns the base URL of a server of the app.
func (a *testApp) url(server string) string {
	return "http://" + a.logs.addr(server)
}

// stop stops the app as SIGTERM would and returns its exit code.
func (a *testApp) stop() int {
	a.cancel()
	select {
	case code := <-a.done:
		a.done <- code
		return code
	case <-time.After(30 * time.Second):
		a.t.Errorf("voting did not stop within 30s; logs:\n%s", a.logs)
		return -1
	}
}

// waitReady polls /readyz until it answers 200.
func (a *testApp) waitReady() {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(a.url("admin") + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.t.Fatalf("not ready in time; logs:\n%s", a.logs)
}

// logWriter collects the JSON log lines and tells when a server is listening.
type logWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	part  []byte
	addrs map[string]string
	waits map[string]chan struct{}
}

func newLogWriter() *logWriter {
	return &logWriter{addrs: map[string]string{}, waits: map[string]chan struct{}{}}
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		var line struct{ Msg, Server, Addr string }
		if json.Unmarshal(l.part[:i], &line) == nil && line.Msg == "listening" {
			l.addrs[line.Server] = line.Addr
			close(l.waitLocked(line.Server))
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *logWriter) waitLocked(name string) chan struct{} {
	if l.waits[name] == nil {
		l.waits[name] = make(chan struct{})
	}
	return l.waits[name]
}

func (l *logWriter) listening(name string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waitLocked(name)
}

func (l *logWriter) addr(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Replace(l.addrs[name], "[::]", "127.0.0.1", 1)
}

func (l *logWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// contains reports whether a log line contains all the parts.
func (l *logWriter) contains(parts ...string) bool {
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(sc.Text(), p)
		}
		if ok {
			return true
		}
	}
	return false
}

// loopback are the listen flags that keep every server on loopback, on free ports.
var loopback = []string{"--vote-addr=127.0.0.1:0", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"}

// seed casts the original's seed votes (3 x 1000 form POSTs, 2000 for a and 1000 for b,
// each from a new voter) and checks they were all accepted.
func seed(t *testing.T, voteURL string) {
	t.Helper()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: voteURL, Votes: 3000, Concurrency: 50,
		Weights: []loadgen.Weight{{Option: "a", Weight: 2}, {Option: "b", Weight: 1}},
	}, nil)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	if rep.Accepted != 3000 || rep.AcceptedByOption["a"] != 2000 || rep.AcceptedByOption["b"] != 1000 {
		t.Fatalf("seed: got %d accepted (%v, answers %v, first error %q), want 3000: 2000 a, 1000 b",
			rep.Accepted, rep.AcceptedByOption, rep.ByStatus, rep.FirstError)
	}
}

// dialResults opens a WebSocket on the result service and returns a function that reads
// results until one satisfies ok, or fails the test after the timeout.
func dialResults(t *testing.T, resultURL string) func(ok func(voting.Result) bool, timeout time.Duration) voting.Result {
	t.Helper()
	c := proctest.MustDialWebSocket(t, resultURL+"/ws")
	return func(ok func(voting.Result) bool, timeout time.Duration) voting.Result {
		t.Helper()
		deadline := time.Now().Add(timeout)
		var last voting.Result
		for {
			b, err := c.Read(max(time.Until(deadline), time.Nanosecond))
			if err != nil {
				t.Fatalf("read websocket (last result %+v): %v", last, err)
			}
			if err := json.Unmarshal(b, &last); err != nil {
				t.Fatalf("websocket message %q: %v", b, err)
			}
			if ok(last) {
				return last
			}
		}
	}
}

func total(n int64) func(voting.Result) bool {
	return func(r voting.Result) bool { return r.Total == n }
}

// getResults reads GET /api/results.
func getResults(t *testing.T, resultURL string) voting.Result {
	t.Helper()
	resp, err := http.Get(resultURL + "/api/results")
	if err != nil {
		t.Fatalf("GET /api/results: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /api/results: %s %s", resp.Status, b)
	}
	var r voting.Result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decode /api/results: %v", err)
	}
	return r
}

// checkSeeded checks a result holds exactly the seed: 3000 votes, 2000 Cats (66.7 %) and
// 1000 Dogs (33.3 %).
func checkSeeded(t *testing.T, where string, r voting.Result) {
	t.Helper()
	if r.Total != 3000 || len(r.Options) != 2 {
		t.Fatalf("%s: got %+v, want 3000 votes over 2 options", where, r)
	}
	a, b := r.Options[0], r.Options[1]
	if a.ID != "a" || a.Label != "Cats" || a.Count != 2000 || fmt.Sprintf("%.0f", a.Percent) != "67" ||
		b.ID != "b" || b.Label != "Dogs" || b.Count != 1000 || fmt.Sprintf("%.0f", b.Percent) != "33" {
		t.Fatalf("%s: got %+v, want Cats 2000 (67%%), Dogs 1000 (33%%)", where, r)
	}
}

func TestMain(m *testing.M) {
	quietRedis(slog.New(slog.DiscardHandler))
	code := m.Run()
	if arm64.dir != "" {
		os.RemoveAll(arm64.dir)
	}
	os.Exit(code)
}
