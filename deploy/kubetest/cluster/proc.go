package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Processes the cluster starts on the host keep their PID in <work>/<name>.pid, so that
// `cluster down`, run from another process or after a crash, stops exactly what was started,
// never anything found by name.

// start runs bin with args in the background, its output in <work>/<name>.log.
func (c *Cluster) start(name, bin string, args ...string) error {
	return c.startEnv(name, nil, bin, args...)
}

// startEnv is start with env added to this process's environment.
func (c *Cluster) startEnv(name string, env []string, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Work, name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a Ctrl-C of the check does not reach it before the
	// tear-down, which stops the components in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go cmd.Wait() // reap it; the PID file is what stop uses
	c.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return os.WriteFile(filepath.Join(c.Work, name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// stop sends SIGTERM to the named process, waits up to 20 s, then SIGKILL. It checks that the
// PID still runs the binary it started (a PID file from an old run may name a reused PID).
func (c *Cluster) stop(name string) {
	pidFile := filepath.Join(c.Work, name+".pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	defer os.Remove(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) || !ownedBy(pid, c.Work, name) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			c.logf("stopped %s", name)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	c.logf("killed %s (no exit 20 s after SIGTERM)", name)
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie counts as gone.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) < 3 || f[2] != "Z"
}

// ownedBy reports whether pid's command line mentions the work directory or the name: every
// component is started with a path inside the work directory or under its own name.
func ownedBy(pid int, work, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	cmdline := string(b)
	return strings.Contains(cmdline, work) || strings.Contains(cmdline, name)
}

// Run runs a command to completion and returns its combined output; the error has it too.
func Run(ctx context.Context, bin string, args ...string) (string, error) {
	return run(ctx, bin, args...)
}

// run runs a command to completion and returns its combined output.
func run(ctx context.Context, bin string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// poll calls f every interval until it returns nil or the timeout passes; the error says what
// was waited for and the last failure.
func poll(ctx context.Context, what string, timeout, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not after %s: %w", what, timeout, errors.Join(last, ctx.Err()))
		case <-time.After(interval):
		}
	}
}
