package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// hostState is what the cluster could leave behind on the host: compared before Up and after
// Down (check 7).
type hostState struct {
	Links     []string `json:"links"`     // network interfaces
	Netns     []string `json:"netns"`     // named network namespaces
	Chains    []string `json:"chains"`    // iptables chains, as table/chain, both families
	Rules     int      `json:"rules"`     // iptables rules mentioning KUBE- or the cluster's comment
	Ipsets    []string `json:"ipsets"`    // ipset names
	NftTables []string `json:"nftTables"` // nftables tables
	Mounts    []string `json:"mounts"`    // mount points under the work or containerd directories
	IPForward string   `json:"ipForward"` // net.ipv4.ip_forward
}

func (c *Cluster) readHost() hostState {
	var s hostState
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				s.Links = append(s.Links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				s.Netns = append(s.Netns, f[0])
			}
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		out, _ := exec.Command(ipt + "-save").Output()
		table := ""
		for _, l := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(l, "*"):
				table = l[1:]
			case strings.HasPrefix(l, ":"):
				s.Chains = append(s.Chains, ipt+"/"+table+"/"+strings.Fields(l[1:])[0])
			case strings.HasPrefix(l, "-A") && (strings.Contains(l, "KUBE-") || strings.Contains(l, ruleComment)):
				s.Rules++
			}
		}
	}
	if out, err := exec.Command("ipset", "list", "-n").Output(); err == nil {
		s.Ipsets = strings.Fields(string(out))
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				s.NftTables = append(s.NftTables, strings.TrimPrefix(l, "table "))
			}
		}
	}
	s.Mounts = c.mounts()
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	s.IPForward = strings.TrimSpace(string(b))
	for _, l := range [][]string{s.Links, s.Netns, s.Chains, s.Ipsets, s.NftTables, s.Mounts} {
		sort.Strings(l)
	}
	return s
}

// mounts lists mount points that belong to the cluster, deepest first.
func (c *Cluster) mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		if strings.HasPrefix(mp, c.Work+"/") || strings.HasPrefix(mp, containerdState+"/") || strings.HasPrefix(mp, "/run/netns/cni-") {
			ms = append(ms, mp)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

func (c *Cluster) snapshotPath() string {
	return filepath.Join(c.Work, "..", filepath.Base(c.Work)+".host.json")
}

// snapshotHost records the host's state before anything is started, unless a snapshot from a
// run that did not finish its tear-down is still there (that one is the true "before").
func (c *Cluster) snapshotHost(context.Context) error {
	if _, err := os.Stat(c.snapshotPath()); err == nil {
		return nil
	}
	b, err := json.MarshalIndent(c.readHost(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(c.snapshotPath(), b, 0o644)
}

// snapshot reads the host's state recorded before Up.
func (c *Cluster) snapshot() (hostState, error) {
	var before hostState
	b, err := os.ReadFile(c.snapshotPath())
	if err != nil {
		return before, fmt.Errorf("no snapshot of the host from before the cluster: %w", err)
	}
	return before, json.Unmarshal(b, &before)
}

// Leftovers compares the host with the snapshot taken before Up and names every difference:
// empty means the tear-down left nothing behind.
func (c *Cluster) Leftovers() ([]string, error) {
	before, err := c.snapshot()
	if err != nil {
		return nil, err
	}
	after := c.readHost()
	var diffs []string
	added := func(what string, was, now []string) {
		for _, x := range now {
			if !slices.Contains(was, x) {
				diffs = append(diffs, what+" "+x)
			}
		}
	}
	added("interface", before.Links, after.Links)
	added("network namespace", before.Netns, after.Netns)
	added("iptables chain", before.Chains, after.Chains)
	added("ipset", before.Ipsets, after.Ipsets)
	added("nftables table", before.NftTables, after.NftTables)
	added("mount", before.Mounts, after.Mounts)
	if after.Rules > before.Rules {
		diffs = append(diffs, fmt.Sprintf("%d iptables rules of KUBE- chains or the cluster's own", after.Rules-before.Rules))
	}
	if after.IPForward != before.IPForward {
		diffs = append(diffs, "net.ipv4.ip_forward "+before.IPForward+" -> "+after.IPForward)
	}
	for _, p := range c.pidFiles() {
		diffs = append(diffs, "pid file "+p)
	}
	return diffs, nil
}

func (c *Cluster) pidFiles() []string {
	m, _ := filepath.Glob(filepath.Join(c.Work, "*.pid"))
	return m
}

// upNetwork: forwarding on, the bridge with the node IP (the API server and kubelet bind to
// it, so it must exist first), and forward rules for pod traffic. Docker's rules set the
// FORWARD policy to DROP and bridged pod traffic passes FORWARD (bridge-nf-call-iptables), so
// without these, pod-to-pod traffic is dropped. They are appended, never inserted: the policy
// engine puts its own jump first and must see the packets before them.
func (c *Cluster) upNetwork(ctx context.Context) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return err
	}
	cmds := [][]string{
		{"ip", "link", "add", Bridge, "type", "bridge"},
		{"ip", "addr", "add", NodeIP + "/24", "dev", Bridge},
		{"ip", "link", "set", Bridge, "up"},
		{"iptables", "-A", "FORWARD", "-s", PodCIDR, "-m", "comment", "--comment", ruleComment, "-j", "ACCEPT"},
		{"iptables", "-A", "FORWARD", "-d", PodCIDR, "-m", "comment", "--comment", ruleComment, "-j", "ACCEPT"},
	}
	for _, a := range cmds {
		if _, err := run(ctx, a[0], a[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// downNetwork undoes upNetwork and whatever the CNI plugins, kube-proxy and kube-router left:
// their chains, rules and ipsets, the empty nftables tables iptables-nft creates, pod network
// namespaces and the bridge. It is safe to call when nothing is there.
func (c *Cluster) downNetwork(ctx context.Context) {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, _ := exec.Command(ipt, "-t", table, "-S").Output()
			var chains []string
			for _, l := range strings.Split(string(out), "\n") {
				f := strings.Fields(l)
				switch {
				case len(f) > 1 && f[0] == "-N" && strings.HasPrefix(f[1], "KUBE-"):
					chains = append(chains, f[1])
				case len(f) > 1 && f[0] == "-A" && (strings.Contains(l, "-j KUBE-") || strings.Contains(l, ruleComment)):
					// The rule is given back exactly as listed, with -D: quoting as -S prints it.
					args := append([]string{"-t", table, "-D"}, splitRule(l)[1:]...)
					_ = exec.Command(ipt, args...).Run()
				}
			}
			for _, ch := range chains {
				_ = exec.Command(ipt, "-t", table, "-F", ch).Run()
			}
			for _, ch := range chains {
				_ = exec.Command(ipt, "-t", table, "-X", ch).Run()
			}
		}
	}
	if out, err := exec.Command("ipset", "list", "-n").Output(); err == nil {
		for _, name := range strings.Fields(string(out)) {
			if strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "inet6:KUBE-") {
				_ = exec.Command("ipset", "destroy", name).Run()
			}
		}
	}
	// Pod network namespaces whose sandboxes were killed without a CNI DEL.
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "cni-") && c.ownsNetns(f[0]) {
				_ = exec.Command("ip", "netns", "delete", f[0]).Run()
			}
		}
	}
	_ = exec.Command("ip", "link", "delete", Bridge).Run()
	_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", cniNetwork))
	c.dropEmptyNftTables()
}

// ownsNetns: a pod namespace of this cluster has an address in the pod range, or, once its
// veth is gone, no address but loopback's.
func (c *Cluster) ownsNetns(name string) bool {
	out, err := exec.Command("ip", "-n", name, "-o", "-4", "addr", "show").Output()
	if err != nil {
		return false
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, " 127.0.0.1/") && !strings.Contains(l, " 10.244.0.") {
			return false
		}
	}
	return true
}

// dropEmptyNftTables deletes the nftables tables that were not there before Up and hold no
// rules now (iptables-nft leaves the tables it created, empty).
func (c *Cluster) dropEmptyNftTables() {
	before, err := c.snapshot()
	if err != nil {
		return
	}
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t := strings.TrimPrefix(l, "table ")
		if t == "" || slices.Contains(before.NftTables, t) {
			continue
		}
		f := strings.Fields(t)
		if len(f) != 2 {
			continue
		}
		rules, err := exec.Command("nft", "list", "table", f[0], f[1]).Output()
		if err == nil && !hasRules(string(rules)) {
			_ = exec.Command("nft", "delete", "table", f[0], f[1]).Run()
		}
	}
}

// splitRule splits an iptables -S line into arguments, keeping "quoted strings" whole.
func splitRule(l string) []string {
	var args []string
	var cur strings.Builder
	inQuote := false
	for _, r := range l {
		switch {
		case r == '"':
			inQuote = !inQuote
		case r == ' ' && !inQuote:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}

// hasRules reports whether `nft list table` output holds a rule: a chain's body has its
// "type ... hook ..." line, and each rule on a line of its own.
func hasRules(table string) bool {
	for _, l := range strings.Split(table, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(l, "\t\t") && t != "" && !strings.HasPrefix(t, "type ") {
			return true
		}
	}
	return false
}
