package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/proctest"
)

// The arm64 binary, built once (into dir, removed by TestMain) for the tests that run it.
var arm64 struct {
	once     sync.Once
	dir, bin string
	err      error
}

// arm64Command is the command that runs the arm64 binary with args: the binary itself on an
// arm64 machine (GitHub's arm64 runner), else under a user-mode emulator: $QEMU_AARCH64, or
// Debian's qemu-aarch64-static (package qemu-user-static, which make test installs when
// missing and running as root). Without one the test fails in CI and is skipped elsewhere.
func arm64Command(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	q := ""
	if runtime.GOARCH != "arm64" {
		q = emulator(t)
	}
	bin := arm64Binary(t)
	if q == "" {
		return exec.CommandContext(ctx, bin, args...)
	}
	return exec.CommandContext(ctx, q, append([]string{bin}, args...)...)
}

// arm64Binary builds the arm64 binary on first use and returns its path. Callers with a
// deadline call it before they start the clock: on a cold machine the build alone (every
// dependency compiled for arm64) takes minutes.
func arm64Binary(t *testing.T) string {
	t.Helper()
	arm64.once.Do(func() {
		if arm64.dir, arm64.err = os.MkdirTemp("", "voting-arm64-"); arm64.err == nil {
			arm64.bin, arm64.err = proctest.BuildFor(arm64.dir, "arm64")
		}
	})
	if arm64.err != nil {
		t.Fatal(arm64.err)
	}
	return arm64.bin
}

func emulator(t *testing.T) string {
	t.Helper()
	if q := os.Getenv("QEMU_AARCH64"); q != "" {
		return q
	}
	q, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no qemu-aarch64-static: the arm64 binary cannot be run (apt-get install qemu-user-static)")
		}
		t.Skip("no qemu-aarch64-static to run the arm64 binary (apt-get install qemu-user-static)")
	}
	return q
}

// startEmulated runs the arm64 binary (under qemu but on arm64) as a process of its own, waits until it
// listens on every server in want, and stops it with SIGTERM at cleanup, as a container
// runtime would.
func startEmulated(t *testing.T, want []string, args ...string) *testApp {
	t.Helper()
	a := &testApp{t: t, done: make(chan int, 1), logs: newLogWriter()}
	cmd := arm64Command(context.Background(), t, args...)
	cmd.Stdout, cmd.Stderr = a.logs, a.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cancel = func() { _ = cmd.Process.Signal(syscall.SIGTERM) }
	go func() {
		_ = cmd.Wait()
		a.done <- cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() { a.stop() })
	a.waitListening(want, args[0])
	return a
}

// runEmulated runs the arm64 binary to its end and returns its output.
func runEmulated(t *testing.T, args ...string) string {
	t.Helper()
	arm64Binary(t) // built before the minute starts
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := arm64Command(ctx, t, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("voting %s (arm64): %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestArm64 runs the binary built for arm64 (as the image's arm64 variant is: CGO off, the
// pure-Go SQLite), under emulation on any other machine: `voting all` on SQLite casts and counts the seed's votes,
// and the split services do the same on the test's Redis and PostgreSQL.
func TestArm64(t *testing.T) {
	if v := runEmulated(t, "version"); !strings.Contains(v, "linux/arm64") {
		t.Fatalf("voting version under emulation: %q, want linux/arm64", v)
	}
	t.Run("all", func(t *testing.T) {
		app := startEmulated(t, []string{"vote", "result", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
		app.waitReady()
		read := dialResults(t, app.url("result"))
		seed(t, app.url("vote"))
		checkSeeded(t, "voting all on arm64, on a WebSocket", read(total(3000), time.Minute))
		checkSeeded(t, "voting all on arm64, /api/results", getResults(t, app.url("result")))
		if code := app.stop(); code != 0 {
			t.Fatalf("exit code %d after SIGTERM, want 0; logs:\n%s", code, app.logs)
		}
	})
	t.Run("split", func(t *testing.T) {
		s := newTestServers(t)
		runEmulated(t, "migrate", s.flags()[1])
		w := startEmulated(t, []string{"admin"}, append([]string{"worker", "--admin-addr=127.0.0.1:0"}, s.flags()...)...)
		v := startEmulated(t, []string{"vote", "admin"}, "vote", "--vote-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[0], s.flags()[2], voterKeyFlag(t))
		r := startEmulated(t, []string{"result", "admin"}, "result", "--result-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", s.flags()[1])
		for _, a := range []*testApp{w, v, r} {
			a.waitReady()
		}
		read := dialResults(t, r.url("result"))
		seed(t, v.url("vote"))
		checkSeeded(t, "the split services on arm64, on a WebSocket", read(total(3000), time.Minute))
	})
}
