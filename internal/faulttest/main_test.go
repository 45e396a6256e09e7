package faulttest

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/votingapp/voting/internal/proctest"
)

// Set by TestMain.
var (
	binary   string // the voting binary, built once
	tempRoot string // world-readable, so PostgreSQL's user can reach its directories
	skipWhy  string // why the servers or the go command are missing, or ""
	setupErr error  // the binary did not build

	setupOnce sync.Once
)

// TestMain makes the temporary root, runs the tests, and removes it. The binary and the
// PostgreSQL template are made by the first test that needs them, so that a run that selects
// no fault test costs nothing.
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
	return m.Run()
}

func setup(root string) string {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "redis-server is not installed (apt-get install redis-server)"
	}
	if err := initPGTemplate(root); err != nil {
		return "PostgreSQL: " + err.Error()
	}
	var err error
	if binary, err = proctest.Build(root); err != nil {
		setupErr = err
	}
	return ""
}

// requireSetup skips the test when the servers or the binary are missing, and fails it
// instead under CI, where a skipped fault test would hide a missing check.
func requireSetup(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests take minutes: skipped with -short")
	}
	setupOnce.Do(func() { skipWhy = setup(tempRoot) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
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
