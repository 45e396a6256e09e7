package faulttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Set by TestMain.
var (
	binary   string // the voting binary, built once
	tempRoot string // world-readable, so PostgreSQL's user can reach its directories
	skipWhy  string // why the servers or the binary are missing, or ""
)

// TestMain builds the binary once and makes the PostgreSQL template, then runs the tests.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := os.MkdirTemp("", "voting-faulttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tempRoot = root
	skipWhy = setup(root)
	return m.Run()
}

func setup(root string) string {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "redis-server is not installed (apt-get install redis-server)"
	}
	if err := initPGTemplate(root); err != nil {
		return "PostgreSQL: " + err.Error()
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "no go command to build the binary with"
	}
	binary = filepath.Join(root, "voting")
	cmd := exec.Command(gobin, "build", "-o", binary, "github.com/votingapp/voting/cmd/voting")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return "go build failed"
	}
	return ""
}

// requireSetup skips the test when the servers or the binary are missing, and fails it
// instead under CI, where a skipped fault test would hide a missing check.
func requireSetup(t *testing.T) {
	t.Helper()
	if skipWhy == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("fault tests cannot run: %s", skipWhy)
	}
	t.Skipf("fault tests need Redis, PostgreSQL and the go command: %s", skipWhy)
}

// tempDir returns a new directory under tempRoot, readable by all (PostgreSQL runs as its own
// user when the tests run as root), removed at cleanup.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(tempRoot, "t-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
