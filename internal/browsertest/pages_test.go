package browsertest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// openResults opens the results page on a new tab and waits until it is live.
func openResults(t *testing.T, browser context.Context, a *app) context.Context {
	t.Helper()
	return openResultsOn(t, newTab(t, browser), a)
}

// openResultsOn opens the results page on tab and waits until it is live.
func openResultsOn(t *testing.T, res context.Context, a *app) context.Context {
	t.Helper()
	do(t, res, chromedp.Navigate(a.resultURL()))
	waitFor(t, res, "the results page to be live", `document.body.dataset.connection === "live"`, 10*time.Second)
	if got := eval[string](t, res, `document.querySelector("#connection .text").textContent`); !strings.EqualFold(got, "live") {
		t.Errorf("connection state says %q, want Live", got)
	}
	return res
}

// text returns the text content of the first element matching a CSS selector.
func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.Join(strings.Fields(s), " ")
}

// checkMarked checks that the vote page marks choice (and nothing else) as the voter's vote.
func checkMarked(t *testing.T, vote context.Context, choice, label string) {
	t.Helper()
	for _, id := range []string{"a", "b"} {
		sel := "#option-" + id
		attrs, err := chromedp.Run(vote, chromedp.Attributes(chromedp.CSS(sel)))
		if err != nil {
			t.Fatal(err)
		}
		chosen := strings.Contains(" "+attrs["class"]+" ", " chosen ")
		if want := id == choice; chosen != want || attrs["aria-pressed"] != strconv.FormatBool(want) {
			t.Errorf("vote page: %s has class %q aria-pressed=%q, want chosen=%v", sel, attrs["class"], attrs["aria-pressed"], want)
		}
	}
	// The other options step back: a background unlike the choice's and unlike a card's
	// (checked until the colour transition is over).
	eventually(t, vote, "the options other than "+label+" to be dimmed", `(() => {
  const form = document.getElementById("ballot");
  const bg = (e) => getComputedStyle(e).backgroundColor;
  const chosen = form.querySelector(".option.chosen");
  const others = [...form.querySelectorAll(".option:not(.chosen)")];
  return form.classList.contains("voted") && others.length > 0 &&
    others.every((o) => bg(o) !== bg(chosen) && bg(o) !== "rgb(255, 255, 255)");
})()`, 2*time.Second)
	if got, want := text(t, vote, "#status"), "You voted for "+label+"."; !strings.HasPrefix(got, want) {
		t.Errorf("vote page status: got %q, want it to start with %q", got, want)
	}
	checkAccessible(t, vote, choice)
}

// checkAccessible checks what a screen reader is told on the vote page: a form named by the
// question, one toggle button per option named by its label and pressed for the choice, and
// a status line, which announces the outcome of a vote.
func checkAccessible(t *testing.T, vote context.Context, choice string) {
	t.Helper()
	want := []string{`form "Cats vs Dogs"`,
		`button "Cats" pressed=` + strconv.FormatBool(choice == "a"),
		`button "Dogs" pressed=` + strconv.FormatBool(choice == "b"),
		`status ""`}
	got := accessible(t, vote)
	slices.Sort(got) // the tree's order is the browser's
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("vote page accessibility tree:\n got %q\nwant %q", got, want)
	}
}

// TestVoteWithJavaScript votes by mouse and keyboard on the enhanced page and watches an
// open results page follow each vote without a reload.
func TestVoteWithJavaScript(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	res := openResults(t, browser, a)

	// Before the first vote: no fake 50/50, and the chart says it is waiting.
	waitShows(t, res, tally{0, 0}, time.Now())
	if got := eval[string](t, res, `document.querySelector("#history .empty")?.textContent ?? ""`); !strings.Contains(got, "No votes yet") {
		t.Errorf("chart before the first vote says %q, want No votes yet", got)
	}
	checkContrast(t, res, "results page, no votes")
	screenshot(t, res, "result-empty-desktop.png")
	points := eval[int](t, res, `Number(document.getElementById("history").dataset.points)`)

	vote := newTab(t, browser)
	do(t, vote, chromedp.Navigate(a.voteURL()))
	if got := text(t, vote, "#status"); got != "Choose an option to vote." {
		t.Errorf("vote page before voting says %q", got)
	}
	if got := text(t, vote, "#instance"); got == "" {
		t.Error("vote page does not show the instance that served it")
	}
	if got := text(t, vote, "#option-a .label") + "/" + text(t, vote, "#option-b .label"); got != "Cats/Dogs" {
		t.Errorf("vote page options: got %s, want Cats/Dogs", got)
	}
	checkContrast(t, vote, "vote page, before voting")
	checkAccessible(t, vote, "")
	// A reload would lose this mark: it shows the page was enhanced in place.
	eval[bool](t, vote, `window.stillThisPage = true`)

	// By keyboard: the first Tab reaches the first option, with a visible focus ring.
	do(t, vote, chromedp.KeyEvent(kb.Tab))
	focus := eval[string](t, vote, `(() => { const e = document.activeElement; const cs = getComputedStyle(e);
  return e.id + " " + e.matches(":focus-visible") + " " + cs.outlineStyle + " " + cs.outlineWidth; })()`)
	if focus != "option-a true solid 3px" {
		t.Errorf("after Tab: focus is %q, want option-a with a visible 3px outline", focus)
	}
	start := time.Now()
	do(t, vote, chromedp.KeyEvent(kb.Enter))
	d1 := waitShows(t, res, tally{1, 0}, start)
	waitFor(t, vote, "the vote page to mark Cats", `document.getElementById("option-a").classList.contains("chosen")`, 5*time.Second)
	checkMarked(t, vote, "a", "Cats")

	// Changing the vote by mouse: the same voter, so the total stays 1.
	start = time.Now()
	do(t, vote, chromedp.Click(chromedp.CSS("#option-b")))
	d2 := waitShows(t, res, tally{0, 1}, start)
	waitFor(t, vote, "the vote page to mark Dogs", `document.getElementById("option-b").classList.contains("chosen")`, 5*time.Second)
	checkMarked(t, vote, "b", "Dogs")

	// A second voter.
	do(t, vote, newVoter(), chromedp.Navigate(a.voteURL()))
	if got := text(t, vote, "#status"); got != "Choose an option to vote." {
		t.Errorf("vote page for a new voter says %q", got)
	}
	eval[bool](t, vote, `window.stillThisPage = true`)
	start = time.Now()
	do(t, vote, chromedp.Click(chromedp.CSS("#option-a")))
	d3 := waitShows(t, res, tally{1, 1}, start)
	waitFor(t, vote, "the vote page to mark Cats", `document.getElementById("option-a").classList.contains("chosen")`, 5*time.Second)
	checkMarked(t, vote, "a", "Cats")
	if !eval[bool](t, vote, `window.stillThisPage === true`) {
		t.Error("the vote page reloaded: with JavaScript a vote must not reload it")
	}
	if !eval[bool](t, res, `performance.getEntriesByType("navigation").length === 1 && document.getElementById("results").dataset.total === "2"`) {
		t.Error("the results page reloaded")
	}
	if got := eval[int](t, res, `Number(document.getElementById("history").dataset.points)`); got < points+3 {
		t.Errorf("chart has %d points after 3 changes, had %d before", got, points)
	}
	t.Logf("vote to results page: keyboard vote %s, changed vote %s, second voter %s", d1, d2, d3)

	time.Sleep(300 * time.Millisecond) // let the colour transitions finish
	checkContrast(t, vote, "vote page, after voting")
	checkContrast(t, res, "results page, with votes")

	// With the server gone, a vote fails visibly and the page keeps showing the vote that
	// counts.
	a.stop(syscall.SIGKILL)
	do(t, vote, chromedp.Click(chromedp.CSS("#option-b")))
	waitFor(t, vote, "the vote page to say the vote failed", `document.querySelector("#status .error") !== null`, 5*time.Second)
	if got := text(t, vote, "#status"); !strings.HasPrefix(got, "Your vote was not recorded") {
		t.Errorf("vote page after a failed vote says %q", got)
	}
	if got := eval[string](t, vote, `document.querySelector(".option.chosen").id`); got != "option-a" {
		t.Errorf("after a failed vote the page marks %s, want option-a (the vote that counts)", got)
	}
	checkContrast(t, vote, "vote page, failed vote")
}

// TestVoteWithoutJavaScript votes on the vote page with JavaScript turned off (a plain form
// POST, the page rendered by the server) and watches the results page follow; the results
// page without JavaScript still shows the numbers.
func TestVoteWithoutJavaScript(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	res := openResults(t, browser, a)

	vote := newTab(t, browser)
	do(t, vote, disableJavaScript(), chromedp.Navigate(a.voteURL()))
	for _, v := range []struct {
		id, label string
		want      tally
	}{{"a", "Cats", tally{1, 0}}, {"b", "Dogs", tally{0, 1}}} {
		eval[bool](t, vote, `window.stillThisPage = true`)
		start := time.Now()
		do(t, vote, chromedp.Click(chromedp.CSS("#option-"+v.id)))
		d := waitShows(t, res, v.want, start)
		do(t, vote, chromedp.WaitVisible(chromedp.CSS("#option-"+v.id+".chosen")))
		checkMarked(t, vote, v.id, v.label)
		// The server answered the form with a new page: the script did not take the vote.
		if eval[bool](t, vote, `window.stillThisPage === true`) {
			t.Error("the vote page did not reload after a vote with JavaScript off")
		}
		t.Logf("form vote for %s to results page: %s", v.label, d)
	}
	if got := eval[string](t, vote, `location.pathname`); got != "/" {
		t.Errorf("after the form POST the vote page is at %s, want /", got)
	}

	static := newTab(t, browser)
	do(t, static, disableJavaScript(), chromedp.Navigate(a.resultURL()))
	if got := text(t, static, "#total"); got != "1 vote in total" {
		t.Errorf("results page without JavaScript: total %q, want 1 vote in total", got)
	}
	if got := text(t, static, `.row[data-option="b"] .percent`); got != "100.0%" {
		t.Errorf("results page without JavaScript: Dogs %q, want 100.0%%", got)
	}
	for _, sel := range []string{"#connection", "#timeline"} {
		if !eval[bool](t, static, `document.querySelector("`+sel+`").hidden`) {
			t.Errorf("results page without JavaScript shows %s, which only works with it", sel)
		}
	}
}

// countSockets makes the tab's pages record the time (Unix ms) of every WebSocket they open,
// in window.socketsOpened. It runs before the page's own scripts, through the protocol, so
// the Content-Security-Policy does not apply to it.
func countSockets() chromedp.Action[chromedp.Void] {
	return call(page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
window.socketsOpened = [];
window.WebSocket = class extends window.WebSocket {
  constructor(...args) { super(...args); window.socketsOpened.push(Date.now()); }
};`})
}

// TestResultsReconnect stops the server under an open results page, first by SIGKILL (no
// close frame, as when a node dies), then by SIGTERM (a close frame, as in a rolling
// update). Each time the page must say it is reconnecting, retry with growing delays
// rather than hammer the server, come back by itself when the server does, and show the
// right numbers.
func TestResultsReconnect(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	res := newTab(t, browser)
	do(t, res, countSockets())
	res = openResultsOn(t, res, a)
	a.postVote("a")
	w := tally{1, 0}
	waitShows(t, res, w, time.Now())

	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		stopped := time.Now()
		a.stop(sig)
		waitFor(t, res, "the results page to say it is reconnecting", `document.body.dataset.connection === "reconnecting"`, 5*time.Second)
		if got := text(t, res, "#connection"); !strings.Contains(strings.ToLower(got), "reconnecting") {
			t.Errorf("after %v: connection state says %q, want Reconnecting", sig, got)
		}
		if sig == syscall.SIGKILL {
			// While the server is down, the delays between attempts grow: between 0.25 s and
			// 0.5 s, then twice that, and so on. With no backoff there would be a dozen
			// attempts in this time, or thousands.
			time.Sleep(time.Until(stopped.Add(2500 * time.Millisecond)))
			attempts := eval[[]float64](t, res, fmt.Sprintf(`window.socketsOpened.filter((t) => t > %d)`, stopped.UnixMilli()))
			var gaps []time.Duration
			for i := 1; i < len(attempts); i++ {
				gaps = append(gaps, time.Duration(attempts[i]-attempts[i-1])*time.Millisecond)
			}
			t.Logf("reconnect attempts in the 2.5 s after the server died: %d, %v apart", len(attempts), gaps)
			if len(attempts) < 2 || len(attempts) > 4 {
				t.Errorf("%d reconnect attempts in 2.5 s, want 2 to 4 (retries with backoff)", len(attempts))
			}
			for i := 1; i < len(gaps); i++ {
				if gaps[i] < gaps[i-1]-50*time.Millisecond {
					t.Errorf("reconnect delays %v do not grow", gaps)
				}
			}
			screenshot(t, res, "result-reconnecting.png")
		}

		restarted := time.Now()
		a.start()
		waitFor(t, res, "the results page to be live again", `document.body.dataset.connection === "live"`, 15*time.Second)
		back := time.Since(restarted)
		if got := text(t, res, "#connection"); !strings.EqualFold(got, "live") {
			t.Errorf("after %v: connection state says %q after reconnecting, want Live", sig, got)
		}
		start := time.Now()
		a.postVote("b")
		w.b++
		d := waitShows(t, res, w, start)
		t.Logf("after %v: live again %s after the restart began; a vote after it shown in %s", sig, back, d)
	}
}

// TestScreenshots writes the screenshots of both pages at desktop and phone widths, light
// and dark, after a few rounds of votes so the chart has a history, and checks the layout
// and the contrast of each.
func TestScreenshots(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	res := openResults(t, browser, a)
	w := tally{}
	for _, round := range []tally{{3, 1}, {2, 3}, {4, 1}, {1, 4}, {5, 2}, {2, 1}} {
		for range round.a {
			a.postVote("a")
		}
		for range round.b {
			a.postVote("b")
		}
		w.a, w.b = w.a+round.a, w.b+round.b
		waitShows(t, res, w, time.Now())
		time.Sleep(250 * time.Millisecond)
	}
	vote := newTab(t, browser)
	do(t, vote, chromedp.Navigate(a.voteURL()), chromedp.Click(chromedp.CSS("#option-a")))
	waitShows(t, res, tally{w.a + 1, w.b}, time.Now())
	waitFor(t, vote, "the vote page to mark Cats", `document.getElementById("option-a").classList.contains("chosen")`, 5*time.Second)
	// Move the mouse away so no hover effect shows, and let transitions finish.
	do(t, vote, chromedp.MouseClickXY(5, 5), chromedp.Sleep(400*time.Millisecond))

	for _, v := range []struct {
		name   string
		w, h   int64
		mobile bool
		scheme string
	}{
		{"desktop", desktopW, desktopH, false, "light"},
		{"phone", phoneW, phoneH, true, "light"},
		{"desktop-dark", desktopW, desktopH, false, "dark"},
		{"phone-dark", phoneW, phoneH, true, "dark"},
	} {
		for _, p := range []struct {
			name string
			tab  context.Context
		}{{"vote", vote}, {"result", res}} {
			do(t, p.tab, setViewport(v.w, v.h, v.mobile), colorScheme(v.scheme), chromedp.Sleep(300*time.Millisecond))
			if bad := eval[[]string](t, p.tab, layoutExpr); len(bad) > 0 {
				t.Errorf("%s page at %s size: %s", p.name, v.name, strings.Join(bad, "; "))
			}
			checkContrast(t, p.tab, p.name+" page, "+v.name)
			screenshot(t, p.tab, p.name+"-"+v.name+".png")
		}
	}
}
