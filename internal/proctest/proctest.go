// Package proctest helps tests that run the real `voting` binary as processes (the browser
// and fault tests): it builds the binary, picks loopback ports and collects a process's
// output. It also holds the tests' WebSocket client of the result service. It is imported by
// tests only.
package proctest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Build compiles cmd/voting into dir and returns the binary's path.
func Build(dir string) (string, error) { return BuildFor(dir, "") }

// BuildFor compiles cmd/voting for the CPU architecture goarch (GOARCH; "" is this machine's)
// into dir, statically as the image's binary is, and returns the binary's path.
func BuildFor(dir, goarch string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command to build the binary with: %w", err)
	}
	bin := filepath.Join(dir, "voting")
	var env []string // nil: this process's environment
	if goarch != "" {
		bin += "-" + goarch
		env = append(os.Environ(), "GOARCH="+goarch, "CGO_ENABLED=0")
	}
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/votingapp/voting/cmd/voting")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a loopback port that was free a moment ago. Tests that restart a process
// on the same port pick it here rather than listening on :0.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// Buffer is a bytes.Buffer safe for a process's writes and the test's reads at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
