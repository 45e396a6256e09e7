package faulttest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/proctest"
)

// service is one `voting <command>` process started by a test.
type service struct {
	t     *testing.T
	name  string
	args  []string
	env   []string
	proc  *child // the latest start
	logs  *proctest.Buffer
	admin string // http://127.0.0.1:port of the admin listener
}

// voterKey signs the voter cookies of every vote process the tests start; the secrets
// test looks for it where it must never be.
const voterKey = "faulttest-voter-key-0123456789abcdefghijklmn"

// startService runs the binary with args (the subcommand first) and the extra environment;
// a vote process gets voterKey in a key file. It does not wait for readiness; waitReady does.
func startService(t *testing.T, name string, env []string, args ...string) *service {
	t.Helper()
	if args[0] == "vote" {
		key := filepath.Join(tempDir(t), "voter-key")
		if err := os.WriteFile(key, []byte(voterKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env = append([]string{"VOTING_VOTER_KEY_FILE=" + key}, env...)
	}
	adminPort := proctest.FreePort(t)
	s := &service{t: t, name: name, env: env, logs: &proctest.Buffer{},
		admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
	s.args = append([]string{}, args...)
	if args[0] != "migrate" {
		s.args = append(s.args, "--admin-addr=127.0.0.1:"+strconv.Itoa(adminPort))
	}
	s.start()
	t.Cleanup(func() {
		s.stop(syscall.SIGKILL, 10*time.Second)
		if t.Failed() {
			t.Logf("logs of %s (%s):\n%s", s.name, strings.Join(s.args, " "), tail(s.logs.String(), 40))
		}
	})
	return s
}

func (s *service) start() {
	s.t.Helper()
	cmd := exec.Command(binary, s.args...)
	// Only what the test gives: no VOTING_* of the environment the tests run in.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "VOTING_LOG_FORMAT=json"}, s.env...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	s.proc = startChild(s.t, s.name, cmd)
}

// restart starts the process again with the same arguments (same ports) once it has exited.
func (s *service) restart() {
	s.t.Helper()
	<-s.proc.done
	fmt.Fprintf(s.logs, "--- restarted ---\n")
	s.start()
}

func (s *service) pid() int { return s.proc.cmd.Process.Pid }

func (s *service) exited() bool { return s.proc.exited() }

// stop sends sig and waits for the exit; it returns the exit code (-1 when killed by a
// signal).
func (s *service) stop(sig syscall.Signal, timeout time.Duration) int {
	s.t.Helper()
	return s.proc.stop(s.t, sig, timeout)
}

// ready reports whether /readyz answers 200.
func (s *service) ready() bool {
	return httpStatus(s.admin+"/readyz") == http.StatusOK
}

// waitReady waits until /readyz answers 200.
func (s *service) waitReady(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !s.ready() {
		if s.exited() {
			s.t.Fatalf("%s exited with %d before it was ready:\n%s", s.name, s.proc.code, tail(s.logs.String(), 30))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not ready after %v:\n%s", s.name, timeout, tail(s.logs.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReadiness waits until /readyz's answer is want (true: 200).
func (s *service) waitReadiness(want bool, timeout time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	for s.ready() != want {
		if time.Since(start) > timeout {
			s.t.Fatalf("%s: readiness still %v after %v, want %v", s.name, !want, timeout, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

func httpStatus(url string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// system is one deployment of the app for a test: its own Redis and PostgreSQL, migrated,
// and the flags that point services at them.
type system struct {
	t      *testing.T
	redis  *redisServer
	pg     *pgServer
	stream string
}

// newSystem starts Redis (with the given appendfsync) and PostgreSQL, and migrates the store
// with `voting migrate`.
func newSystem(t *testing.T, fsync string) *system {
	t.Helper()
	requireSetup(t)
	return newSystemOn(t, startRedis(t, fsync))
}

// newSystemOn is newSystem with a Redis the test started.
func newSystemOn(t *testing.T, r *redisServer) *system {
	t.Helper()
	sys := &system{t: t, redis: r, pg: startPostgres(t), stream: "votes"}
	m := startService(t, "migrate", nil, "migrate", "--postgres-url="+sys.pg.URL)
	select {
	case <-m.proc.done:
	case <-time.After(60 * time.Second):
		t.Fatal("voting migrate did not finish in 60s")
	}
	if m.proc.code != 0 {
		t.Fatalf("voting migrate exited %d:\n%s", m.proc.code, m.logs)
	}
	return sys
}

// vote starts `voting vote` on a fresh port and waits until it is ready.
func (sys *system) vote(extra ...string) (*service, string) {
	port := proctest.FreePort(sys.t)
	s := startService(sys.t, "vote", nil, append([]string{"vote", "--redis-url=" + sys.redis.URL, "--stream=" + sys.stream,
		"--vote-addr=127.0.0.1:" + strconv.Itoa(port), "--shutdown-timeout=20s"}, extra...)...)
	s.waitReady(30 * time.Second)
	return s, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// worker starts `voting worker` with a short claim timeout, so that votes held by a killed
// worker are taken over within seconds.
func (sys *system) worker(extra ...string) *service {
	s := startService(sys.t, "worker", nil, append([]string{"worker", "--redis-url=" + sys.redis.URL, "--stream=" + sys.stream,
		"--postgres-url=" + sys.pg.URL, "--claim-timeout=2s", "--shutdown-timeout=20s"}, extra...)...)
	s.waitReady(30 * time.Second)
	return s
}

// result starts `voting result` and waits until it is ready.
func (sys *system) result(extra ...string) (*service, string) {
	port := proctest.FreePort(sys.t)
	s := startService(sys.t, "result", nil, append([]string{"result", "--postgres-url=" + sys.pg.URL,
		"--result-addr=127.0.0.1:" + strconv.Itoa(port), "--poll-interval=1s", "--shutdown-timeout=20s"}, extra...)...)
	s.waitReady(30 * time.Second)
	return s, fmt.Sprintf("http://127.0.0.1:%d", port)
}
