//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/votingapp/voting/internal/doctor"
)

// netnsChild, set in the environment, makes TestDoctorTimeout the part that runs inside the
// network namespace (its value is the port whose packets are dropped there).
const netnsChild = "VOTING_TEST_DOCTOR_NETNS_PORT"

// Ports inside the test's own namespace, which holds nothing else: one whose packets a rule
// drops, one left open to show that the namespace's loopback works.
const droppedPort, openPort = 8080, 8081

// TestDoctorTimeout makes a real connection timeout on this machine only: a network
// namespace of its own with its own loopback, a listener there, and a rule in that namespace
// that drops every packet to the listener's port. Run inside the namespace (this test binary
// again, under `ip netns exec`), doctor's check of each hop at that port must end in the
// timeout sentence. No packet leaves the namespace.
func TestDoctorTimeout(t *testing.T) {
	if port := os.Getenv(netnsChild); port != "" {
		doctorInNamespace(t, port)
		return
	}
	dropRule := requireNamespaces(t)
	ns := randomName("voting-doctor-")
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		needMachine(t, fmt.Sprintf("ip netns add: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	dropRule(t, ns, droppedPort)

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestDoctorTimeout$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", netnsChild, droppedPort))
	out, err := cmd.CombinedOutput()
	t.Logf("inside namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("the check inside the namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "timed out after 1s: a firewall or a NetworkPolicy dropping the packets?") {
		t.Fatal("the run inside the namespace did not report the timeout")
	}
}

// doctorInNamespace is the part inside the namespace: a listener on the dropped port, proof
// that the open port connects and the dropped one does not, then doctor against the dropped
// port for every hop.
func doctorInNamespace(t *testing.T, port string) {
	dropped, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer dropped.Close()
	open, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", openPort))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if c, err := net.DialTimeout("tcp", open.Addr().String(), time.Second); err != nil {
		t.Fatalf("the namespace's loopback does not connect to %s: %v", open.Addr(), err)
	} else {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp", dropped.Addr().String(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("connected to %s although its packets should be dropped", dropped.Addr())
	}

	addr := dropped.Addr().String()
	var out strings.Builder
	code := run(context.Background(), []string{"voting", "doctor", "--timeout=1s",
		"--vote-url=http://" + addr, "--result-url=http://" + addr,
		"--redis-url=redis://" + addr + "/0", "--postgres-url=postgres://voting@" + addr + "/voting?sslmode=disable"},
		func(string) string { return "" }, &out, &out)
	t.Logf("voting doctor (exit %d):\n%s", code, &out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	lines := strings.Split(out.String(), "\n")
	for i, name := range []string{doctor.HopVote, doctor.HopRedis, doctor.HopWorker, doctor.HopPostgres, doctor.HopResult} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], name) {
			t.Fatalf("line %d is not %s's:\n%s", i, name, &out)
		}
		want := "BROKEN   connecting to " + addr + " timed out after 1s: a firewall or a NetworkPolicy dropping the packets? (or the host is down); allow the traffic from here to that port, or fix the address in --"
		if name == doctor.HopWorker {
			want = "skipped  not checked: Redis could not be read"
		}
		if !strings.Contains(lines[i], want) {
			t.Errorf("%s: %q lacks %q", name, lines[i], want)
		}
	}
}

// requireNamespaces returns how to add the drop rule (nft, else iptables), or skips the test
// (fails it under CI) when this machine cannot make namespaces: not root, or no ip.
func requireNamespaces(t *testing.T) func(t *testing.T, ns string, port int) {
	t.Helper()
	if os.Geteuid() != 0 {
		needMachine(t, "not root: network namespaces and their firewall rules need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		needMachine(t, "no ip command (Debian: iproute2)")
	}
	inNS := func(t *testing.T, ns string, stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		return func(t *testing.T, ns string, port int) {
			inNS(t, ns, fmt.Sprintf(`table inet voting_doctor_test {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport %d drop
	}
}
`, port), "nft", "-f", "-")
		}
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		return func(t *testing.T, ns string, port int) {
			inNS(t, ns, "", "iptables", "-A", "INPUT", "-p", "tcp", "--dport", fmt.Sprint(port), "-j", "DROP")
		}
	}
	needMachine(t, "neither nft nor iptables (Debian: nftables or iptables)")
	return nil
}

// needMachine skips a test that needs something this machine lacks, or fails it under CI,
// where a missing piece is a broken runner, not a reason to test less.
func needMachine(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}
