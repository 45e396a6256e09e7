package monitoring

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/promqltest"
)

// repoRoot is the voting module, two levels up.
const repoRoot = "../.."

// redisOnly are the metrics that only a process on Redis exports.
var redisOnly = map[string]bool{"voting_queue_memory_bytes": true, "voting_queue_memory_limit_bytes": true}

// TestMetricsExistInScrape runs the real binary (`voting all` on the embedded store and queue),
// casts votes including a refused one, scrapes /metrics and checks that every metric read by
// the rules, the dashboard and the canary analysis is there: a query of a metric that does not
// exist returns no data and an alert on it never fires, which no parser can catch.
func TestMetricsExistInScrape(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the app")
	}
	t.Parallel()
	scrapes := scrapeRunningApp(t)
	families := scrapes[1]

	wanted := map[string][]string{} // metric -> where it is read
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			where := "rule " + r.Record + r.Alert
			if e := parseExpr(t, where, r.Expr); e != nil {
				for _, n := range metricNames(t, where, e) {
					wanted[n] = append(wanted[n], where)
				}
			}
		}
	}
	_, qs := loadDashboard(t)
	for _, q := range qs {
		if e := parseExpr(t, q.where, substitute(q.expr)); e != nil {
			for _, n := range metricNames(t, q.where, e) {
				wanted[n] = append(wanted[n], "dashboard "+q.where)
			}
		}
	}
	for name, q := range analysisQueries(t, canaryArgs) {
		where := "the canary analysis's " + name
		if e := parseExpr(t, where, q); e != nil {
			for _, n := range metricNames(t, where, e) {
				wanted[n] = append(wanted[n], where)
			}
		}
	}

	var missing []string
	for _, name := range slices.Sorted(maps.Keys(wanted)) {
		if isRecorded(name) {
			continue // defined by a recording rule; TestRulesParse checks that
		}
		if redisOnly[name] {
			continue // `voting all` has no Redis; TestSplitProcessesExposeTheirMetrics checks it
		}
		if !exposed(families, name) {
			missing = append(missing, name)
			t.Errorf("%s is not in the scrape; read by %s", name, strings.Join(slices.Compact(wanted[name]), ", "))
		}
	}
	if len(missing) > 0 {
		t.Logf("missing from the scrape: %s", strings.Join(missing, " "))
	}

	// Every metric of the app is explained in the operations guide, under a heading of its
	// own name (so it can be linked to).
	anchors := docAnchors(t)
	for name := range families {
		if strings.HasPrefix(name, "voting_") && !anchors[slug(name)] {
			t.Errorf("%s is in the scrape but has no heading in %s", name, docsPath)
		}
	}

	queriesReturnData(t, scrapes)
}

// queriesReturnData loads two scrapes, a minute apart, into a Prometheus test storage and
// evaluates every dashboard query and recording rule with Prometheus' engine at the second:
// each must return at least one series. A metric that exists but a label matcher that matches
// none of its series (a wrong label name or value) shows up here as an empty panel would.
func queriesReturnData(t *testing.T, scrapes [2]map[string]*dto.MetricFamily) {
	t.Helper()
	series := map[string][2]string{} // series in PromQL notation -> its two values
	for i, fams := range scrapes {
		samples, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()}, slices.Collect(maps.Values(fams))...)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			name := string(s.Metric[model.MetricNameLabel])
			var ls []string
			for _, l := range slices.Sorted(maps.Keys(s.Metric)) {
				if l != model.MetricNameLabel {
					ls = append(ls, string(l)+"="+strconv.Quote(string(s.Metric[l])))
				}
			}
			key := name + "{" + strings.Join(ls, ",") + "}"
			v := series[key]
			if v[0] == "" {
				v = [2]string{"_", "_"} // "_": no sample at that step
			}
			v[i] = strconv.FormatFloat(float64(s.Value), 'g', -1, 64)
			series[key] = v
		}
	}
	var load strings.Builder
	load.WriteString("load 1m\n")
	for _, key := range slices.Sorted(maps.Keys(series)) {
		load.WriteString("  " + key + " " + series[key][0] + " " + series[key][1] + "\n")
	}
	storage := promqltest.LoadedStorage(t, load.String())
	defer storage.Close()
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)

	eval := func(where, expr string) {
		q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(60, 0))
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		defer q.Close()
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Errorf("%s: %v", where, res.Err)
			return
		}
		if vec, err := res.Vector(); err != nil || len(vec) == 0 {
			t.Errorf("%s returns no data on a running app: %s", where, expr)
		}
	}
	_, qs := loadDashboard(t)
	for _, q := range qs {
		if !strings.HasPrefix(q.where, "variable ") {
			eval("dashboard "+q.where, substitute(q.expr))
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				eval("recording rule "+r.Record, r.Expr)
			}
		}
	}
}

// exposed reports whether the scrape has the metric: a family of that name, or for the
// _bucket, _sum and _count series of a histogram (and _sum, _count of a summary) the family of
// the base name with that type.
func exposed(families map[string]*dto.MetricFamily, name string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := families[base]
		if !ok {
			return false
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// TestExposedHistogramSeries checks exposed's suffix handling on a scrape made up here.
func TestExposedHistogramSeries(t *testing.T) {
	fams := parseScrape(t, []byte(`# TYPE h histogram
h_bucket{le="+Inf"} 1
h_sum 1
h_count 1
# TYPE c counter
c_total 1
`))
	for name, want := range map[string]bool{
		"h_bucket": true, "h_sum": true, "h_count": true, "h": true, "c_total": true,
		"c_total_bucket": false, "c_bucket": false, "x": false, "h_total": false,
	} {
		if got := exposed(fams, name); got != want {
			t.Errorf("exposed(%s) = %v, want %v", name, got, want)
		}
	}
}

func parseScrape(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return fams
}

// app is the voting binary, built once for all the tests that run it.
var app struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// TestMain removes the binary built by buildApp.
func TestMain(m *testing.M) {
	code := m.Run()
	if app.dir != "" {
		os.RemoveAll(app.dir)
	}
	os.Exit(code)
}

// buildApp builds cmd/voting of the repository once, into a temporary directory. The go
// command is the one running the tests (go test puts its GOROOT/bin first in PATH).
func buildApp(t *testing.T) string {
	t.Helper()
	app.once.Do(func() {
		if app.dir, app.err = os.MkdirTemp("", "voting-monitoring-"); app.err != nil {
			return
		}
		app.bin = filepath.Join(app.dir, "voting")
		build := exec.Command("go", "build", "-o", app.bin, "./cmd/voting")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			app.err = fmt.Errorf("go build ./cmd/voting: %v\n%s", err, out)
		}
	})
	if app.err != nil {
		t.Fatal(app.err)
	}
	return app.bin
}

// scrapeRunningApp builds cmd/voting, runs `voting all` on free loopback ports with a
// throwaway data directory, waits until it is ready, casts two good votes (form and JSON) and
// one refused vote, waits for the results to count them, and scrapes the admin port; then
// does it all again for a second scrape. It returns both scrapes, parsed.
func scrapeRunningApp(t *testing.T) [2]map[string]*dto.MetricFamily {
	t.Helper()
	bin := buildApp(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	addrs := startProcess(t, bin, "all", 3, func(p []string) []string {
		// A rate limit far above what the test casts, so that its counter is exported too.
		return []string{"--data-dir=" + dataDir, "--vote-addr=" + p[0], "--result-addr=" + p[1], "--admin-addr=" + p[2],
			"--rate-limit=1000", "--rate-burst=1000"}
	})
	vote, result, admin := "http://"+addrs[0], "http://"+addrs[1], "http://"+addrs[2]
	var scrapes [2]map[string]*dto.MetricFamily
	for i := range scrapes {
		castVotes(t, vote)
		total := fmt.Sprintf(`"total":%d`, 2*(i+1))
		waitFor(t, "the results to count "+total, func() bool {
			body, code := get(t, result+"/api/results")
			return code == http.StatusOK && strings.Contains(body, total)
		})
		scrapes[i] = scrape(t, admin)
	}
	return scrapes
}

var client = &http.Client{Timeout: 5 * time.Second}

// castVotes casts a form vote and a JSON vote, and a vote for an unknown option, which must
// be refused with 400.
func castVotes(t *testing.T, vote string) {
	t.Helper()
	expect := func(resp *http.Response, err error, want int, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %s, want %d", what, resp.Status, want)
		}
	}
	resp, err := client.Get(vote + "/")
	expect(resp, err, http.StatusOK, "GET vote /")
	resp, err = client.PostForm(vote+"/", url.Values{"vote": {"a"}})
	expect(resp, err, http.StatusOK, "POST vote / vote=a")
	resp, err = client.Post(vote+"/api/vote", "application/json", strings.NewReader(`{"vote":"b"}`))
	expect(resp, err, http.StatusAccepted, "POST vote /api/vote b")
	resp, err = client.PostForm(vote+"/", url.Values{"vote": {"zzz"}})
	expect(resp, err, http.StatusBadRequest, "POST vote / vote=zzz")
}

// get returns the body and status of a GET, failing the test if there is no answer.
func get(t *testing.T, u string) (string, int) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String(), resp.StatusCode
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape reads and parses /metrics of an admin URL.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	body, code := get(t, admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("scrape %s: status %d", admin, code)
	}
	return parseScrape(t, []byte(body))
}

// startProcess starts `voting <command>` with the flags args returns for nPorts free loopback
// addresses, the last of which must be the admin address, and waits until /readyz answers
// 200. The process is stopped with SIGTERM when the test ends. A port taken by someone else
// between freePorts and the start is retried with new ports.
func startProcess(t *testing.T, bin, command string, nPorts int, args func(addrs []string) []string) []string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addrs := freePorts(t, nPorts)
		if startOn(t, bin, command, addrs[nPorts-1], args(addrs), attempt < 3) {
			return addrs
		}
	}
}

// startOn runs `voting <command> flags...` and waits until admin's /readyz answers 200. It
// returns false when the process exited because a port was taken and mayRetry is set; any
// other failure fails the test.
func startOn(t *testing.T, bin, command, admin string, flags []string, mayRetry bool) bool {
	t.Helper()
	var logs syncBuffer
	cmd := exec.Command(bin, append([]string{command, "--log-format=text", "--log-level=debug"}, flags...)...)
	cmd.Env = append(os.Environ(), "VOTING_REDIS_URL=", "VOTING_POSTGRES_URL=")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := client.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("voting %s output:\n%s", command, logs.String())
					}
				})
				return true
			}
		}
		select {
		case <-done:
			if mayRetry && strings.Contains(logs.String(), "address already in use") {
				return false
			}
			t.Fatalf("voting %s exited: %v\n%s", command, waitErr, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("voting %s not ready after 30s\n%s", command, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n loopback addresses that were free a moment ago. The app gets fixed
// ports rather than :0 so that the test needs nothing from its logs.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
