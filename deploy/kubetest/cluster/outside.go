package cluster

import (
	"context"
	"os"
	"os/exec"
)

// The "outside" server: a host of its own in a network namespace on this machine, that
// pods reach through the node's routing like any address outside the cluster. The egress
// check sends traffic there and nowhere else: no test ever sends traffic to an address that
// is not on this machine.
const (
	outsideNetns = "voting-outside"
	outsideLink  = "voting-out0"
	outsideHost  = "10.250.0.1"
	// OutsideIP:OutsidePort serves HTTP (busybox httpd) inside the namespace.
	OutsideIP   = "10.250.0.2"
	OutsidePort = "8080"
)

// upOutside makes the namespace, its veth link and the server.
func (c *Cluster) upOutside(ctx context.Context) error {
	dir := c.path("outside")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dir+"/index.html", []byte("outside\n"), 0o644); err != nil {
		return err
	}
	for _, a := range [][]string{
		{"ip", "netns", "add", outsideNetns},
		{"ip", "link", "add", outsideLink, "type", "veth", "peer", "name", "eth0", "netns", outsideNetns},
		{"ip", "addr", "add", outsideHost + "/30", "dev", outsideLink},
		{"ip", "link", "set", outsideLink, "up"},
		{"ip", "-n", outsideNetns, "addr", "add", OutsideIP + "/30", "dev", "eth0"},
		{"ip", "-n", outsideNetns, "link", "set", "eth0", "up"},
		{"ip", "-n", outsideNetns, "link", "set", "lo", "up"},
		{"ip", "-n", outsideNetns, "route", "add", "default", "via", outsideHost},
	} {
		if _, err := run(ctx, a[0], a[1:]...); err != nil {
			return err
		}
	}
	return c.start("outside-server", "ip", "netns", "exec", outsideNetns, "busybox", "httpd", "-f", "-p", OutsideIP+":"+OutsidePort, "-h", dir)
}

// downOutside removes the server, the link and the namespace, if there.
func (c *Cluster) downOutside() {
	c.stop("outside-server")
	_ = exec.Command("ip", "link", "delete", outsideLink).Run()
	_ = exec.Command("ip", "netns", "delete", outsideNetns).Run()
}
