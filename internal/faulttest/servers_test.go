package faulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/votingapp/voting/internal/proctest"
)

// child is a process started by a test (a server or the app). Only children are ever
// signalled.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	code int           // the exit code once done is closed (-1: killed by a signal)
}

func startChild(t *testing.T, name string, cmd *exec.Cmd) *child {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		c.code = cmd.ProcessState.ExitCode()
		if err != nil && c.code == 0 {
			c.code = -1
		}
		close(c.done)
	}()
	return c
}

// stop sends sig unless the process has exited, waits for the exit, and returns the exit
// code. A process still running after timeout is killed, and the test fails.
func (c *child) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) int {
	t.Helper()
	if !c.exited() {
		_ = c.cmd.Process.Signal(sig)
	}
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Errorf("%s did not exit within %v of %v; killed", c.name, timeout, sig)
	}
	return c.code
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// redisServer is a Redis of the test's own, with its data in a temporary directory so that a
// restart finds what the AOF kept.
type redisServer struct {
	t     *testing.T
	port  int
	dir   string
	fsync string
	extra []string // more redis-server arguments
	proc  *child
	URL   string
}

// startRedis starts redis-server with the append-only file on and the given appendfsync
// ("always", "everysec" or "no"); RDB snapshots are off so that the AOF alone decides what a
// restart finds.
func startRedis(t *testing.T, fsync string) *redisServer {
	t.Helper()
	return startRedisWithPassword(t, fsync, "")
}

// startRedisWithPassword starts Redis requiring the password (none when "").
func startRedisWithPassword(t *testing.T, fsync, password string) *redisServer {
	t.Helper()
	r := &redisServer{t: t, port: proctest.FreePort(t), dir: tempDir(t), fsync: fsync}
	r.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
	if password != "" {
		r.extra = []string{"--requirepass", password}
		r.URL = fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", password, r.port)
	}
	r.start()
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.stop(t, syscall.SIGKILL, 10*time.Second)
		}
	})
	return r
}

func (r *redisServer) start() {
	t := r.t
	t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", r.fsync,
		"--logfile", filepath.Join(r.dir, "redis.log"), "--daemonize", "no")
	cmd.Args = append(cmd.Args, r.extra...)
	r.proc = startChild(t, fmt.Sprintf("redis-server on :%d", r.port), cmd)
	opt, _ := redis.ParseURL(r.URL)
	c := redis.NewClient(opt)
	defer c.Close()
	waitUp(t, r.proc, filepath.Join(r.dir, "redis.log"), 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	})
}

// waitUp calls ping until it succeeds. When the server exits first, or timeout passes, the
// test fails with the server's log.
func waitUp(t *testing.T, server *child, logPath string, timeout time.Duration, ping func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ping()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || server.exited() {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("%s not up: %v\n%s", server.name, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill kills Redis with SIGKILL, waits down for the given time, and starts it again.
func (r *redisServer) kill(down time.Duration) {
	r.proc.stop(r.t, syscall.SIGKILL, 10*time.Second)
	time.Sleep(down)
	r.start()
}

func (r *redisServer) client() *redis.Client {
	opt, _ := redis.ParseURL(r.URL)
	c := redis.NewClient(opt)
	r.t.Cleanup(func() { c.Close() })
	return c
}

// pgServer is a PostgreSQL of the test's own. PostgreSQL refuses to run as root, so when the
// tests run as root it runs as the user postgres.
type pgServer struct {
	t    *testing.T
	port int
	dir  string
	proc *child
	URL  string // superuser URL
}

// pgBin is the directory of the newest installed PostgreSQL's programs, or "".
func pgBin() string {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", 0
	for _, m := range ms {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(m)))
		if _, err := os.Stat(filepath.Join(m, "initdb")); err == nil && v > bestV {
			best, bestV = m, v
		}
	}
	return best
}

// pgCredential is the user PostgreSQL runs as when the tests run as root.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no user postgres to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgTemplate is a data directory made by initdb once per run (in TestMain); each test copies
// it, which takes milliseconds where initdb takes seconds.
var pgTemplate string

func initPGTemplate(root string) error {
	bin := pgBin()
	if bin == "" {
		return fmt.Errorf("no PostgreSQL found under /usr/lib/postgresql (set PG_BIN)")
	}
	cred, err := pgCredential()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "pg-template")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(bin, "initdb"), "-D", dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	pgTemplate = dir
	return nil
}

// startPostgres starts a PostgreSQL on a copy of the template. fsync is off: these tests
// restart PostgreSQL with fast shutdowns, which write everything, and never crash the host.
func startPostgres(t *testing.T) *pgServer {
	t.Helper()
	cred, err := pgCredential()
	if err != nil {
		t.Fatal(err)
	}
	base := tempDir(t)
	if cred != nil {
		// The socket goes here too, so PostgreSQL's user must own it.
		if err := os.Chown(base, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "pg")
	if out, err := exec.Command("cp", "-a", pgTemplate, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the PostgreSQL template: %v\n%s", err, out)
	}
	p := &pgServer{t: t, port: proctest.FreePort(t), dir: dir}
	p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	p.start()
	t.Cleanup(func() {
		if p.proc != nil {
			p.proc.stop(t, syscall.SIGQUIT, 20*time.Second) // immediate shutdown
		}
	})
	return p
}

func (p *pgServer) start() {
	t := p.t
	t.Helper()
	cred, _ := pgCredential()
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(p.dir), "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(pgBin(), "postgres"), "-D", p.dir, "-p", strconv.Itoa(p.port),
		"-k", filepath.Dir(p.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "max_connections=100", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	p.proc = startChild(t, fmt.Sprintf("postgres on :%d", p.port), cmd)
	waitUp(t, p.proc, logf.Name(), 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, p.URL)
		if err == nil {
			conn.Close(ctx)
		}
		return err
	})
}

// restart stops PostgreSQL with a fast shutdown (SIGINT: open transactions are rolled back,
// clients disconnected, everything committed written), stays down for the given time, and
// starts it again.
func (p *pgServer) restart(down time.Duration) {
	p.proc.stop(p.t, syscall.SIGINT, 60*time.Second)
	time.Sleep(down)
	p.start()
}

// query runs one statement as the superuser and returns the rows as strings.
func (p *pgServer) query(sql string, args ...any) [][]string {
	t := p.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}
