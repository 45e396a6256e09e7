package browsertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/votingapp/voting/internal/proctest"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

// TestPipelineLine checks the line of the results page that says whether counting is up to
// date. With `voting all`, once a vote is counted: the quiet line. Then `voting result` alone on
// a PostgreSQL database that no worker reports to: nothing counted says so plainly, and a
// worker that stopped reporting minutes ago while votes waited says that, both readable.
func TestPipelineLine(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	res := openResults(t, browser, a)
	start := time.Now()
	a.postVote("a")
	waitShows(t, res, tally{1, 0}, start)
	waitFor(t, res, "the quiet line", `document.getElementById("pipeline").dataset.state === "ok"`, 10*time.Second)
	if got := text(t, res, "#pipeline"); got != "Counting is up to date (1 worker counting)." {
		t.Errorf("results page with a worker counting says %q", got)
	}
	checkContrast(t, res, "results page, counting up to date")
	a.stop(syscall.SIGTERM)

	pg := migratedSchema(t)
	r := &app{t: t, logs: &proctest.Buffer{}, resultAddr: proctest.FreeAddr(t), adm: proctest.FreeAddr(t)}
	r.command = []string{"result", "--postgres-url=" + pg, "--log-format=text", "--poll-interval=200ms",
		"--result-addr=" + r.resultAddr, "--admin-addr=" + r.adm}
	r.start()
	t.Cleanup(func() { r.stop(syscall.SIGTERM) })
	page := newTab(t, browser)
	do(t, page, chromedp.Navigate(r.resultURL()))
	waitFor(t, page, "the empty state", `document.getElementById("pipeline").dataset.state === "empty"`, 10*time.Second)
	if got := text(t, page, "#pipeline"); !strings.HasPrefix(got, "Nothing has been counted yet, and no worker has reported to this database") {
		t.Errorf("results page on a database no worker reports to says %q", got)
	}
	checkContrast(t, page, "results page, nothing counted and no worker")

	// A worker last seen 5 minutes ago with 12 votes waiting, and one vote counted.
	c, err := pgx.Connect(context.Background(), pg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), `INSERT INTO votes (id, vote, voted_at) VALUES ('v1', 'a', now());
		INSERT INTO worker_status (worker, seen_at, recorded_at, backlog) VALUES ('worker-1', now() - interval '5 minutes', now() - interval '6 minutes', 12)`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, page, "the no-worker state", `document.getElementById("pipeline").dataset.state === "no_worker"`, 10*time.Second)
	if got := text(t, page, "#pipeline"); got != "No worker has reported for 5 minutes, when 12 votes were waiting: new votes are not being counted. Is a worker running?" {
		t.Errorf("results page with the worker gone says %q", got)
	}
	checkContrast(t, page, "results page, no worker")
	screenshot(t, page, "result-no-worker-desktop.png")

	// The worker back, stalled by a drill: the page says votes wait, and shows its drill.
	if _, err := c.Exec(context.Background(), `UPDATE worker_status SET seen_at = now(),
		drills = 'A drill is on in a worker: it has stopped taking votes from the queue.'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, page, "the stalled state", `document.getElementById("pipeline").dataset.state === "stalled"`, 10*time.Second)
	if got := text(t, page, "#pipeline"); !strings.HasPrefix(got, "No vote has been recorded for 6 minutes, and 12 votes are waiting in the queue") {
		t.Errorf("results page with the worker stalled says %q", got)
	}
	if got := text(t, page, "#drills .drill"); got != "A drill is on in a worker: it has stopped taking votes from the queue." {
		t.Errorf("results page's drill notice: %q", got)
	}
	checkContrast(t, page, "results page, a worker's drill")
	screenshot(t, page, "result-drill-desktop.png")
}

// migratedSchema returns the URL of a schema of its own on the test PostgreSQL, migrated by
// the binary, dropped when the test ends.
func migratedSchema(t *testing.T) string {
	t.Helper()
	base := votingtest.RequireServer(t, "VOTING_TEST_POSTGRES_URL")
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "browser_" + hex.EncodeToString(b)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		c.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	if out, err := exec.Command(binary, "migrate", "--postgres-url="+u.String()).CombinedOutput(); err != nil {
		t.Fatalf("voting migrate: %v\n%s", err, out)
	}
	return u.String()
}
