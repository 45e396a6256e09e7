package browsertest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// doubleClick double-clicks the middle of the element a CSS selector finds, as a person
// does: two presses and releases in a row, the second with a click count of 2. (chromedp's
// DoubleClick sends one press with a count of 2, which a page sees as a single click.)
func doubleClick(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	xy := eval[[]float64](t, tab, `(() => { const r = document.querySelector(`+jsString(sel)+`).getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	do(t, tab, chromedp.MouseClickXY(xy[0], xy[1]), chromedp.MouseClickXY(xy[0], xy[1], chromedp.ClickCount(2)))
}

// slowVotes is a proxy in front of the vote service that passes each request on at once but
// holds the answer to a POST for hold, as a slow network would: the vote is taken, and the
// browser learns it (and gets the answer's cookies) only later, so that a second click lands
// while the first vote is in flight. It returns the proxy's URL and the number of POSTs.
func slowVotes(t *testing.T, a *app, hold time.Duration) (string, *atomic.Int32) {
	t.Helper()
	target, err := url.Parse(a.voteURL())
	if err != nil {
		t.Fatal(err)
	}
	var posts atomic.Int32
	proxy := &httputil.ReverseProxy{
		// The Host header stays the proxy's, as the browser sent it, so that the vote
		// service's cross-origin check sees a same-origin request.
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.Method == http.MethodPost {
				posts.Add(1)
				time.Sleep(hold)
			}
			return nil
		},
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL + "/", &posts
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// total is the number of voters the results service counts now.
func (a *app) total(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(a.resultURL() + "api/results")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Total int }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r.Total
}

// TestDoubleClickIsOneVoter: a new visitor who double-clicks their first vote is one voter,
// with JavaScript (the page sends one vote at a time) and without (the page's answer gave
// the browser its voter id, so both form POSTs are the same voter's). The answers to votes
// are held for 500 ms on their way back (slowVotes), so that the second click comes while
// the first vote is in flight. Before, each click was a new voter: the id came only with a vote's
// answer, and the page sent both.
func TestDoubleClickIsOneVoter(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	res := openResults(t, browser, a)
	vote := newTab(t, browser)
	voteURL, posts := slowVotes(t, a, 500*time.Millisecond)

	for _, tt := range []struct {
		name  string
		js    bool
		click func()
	}{
		{"double click with JavaScript", true, func() { doubleClick(t, vote, "#option-a") }},
		{"double click without JavaScript", false, func() { doubleClick(t, vote, "#option-a") }},
		{"second click 200 ms later without JavaScript", false, func() {
			do(t, vote, chromedp.Click(chromedp.CSS("#option-a")), chromedp.Sleep(200*time.Millisecond), chromedp.Click(chromedp.CSS("#option-a")))
		}},
	} {
		before, sent := a.total(t), posts.Load()
		do(t, vote, newVoter())
		if !tt.js {
			do(t, vote, disableJavaScript())
		}
		do(t, vote, chromedp.Navigate(voteURL))
		tt.click()
		do(t, vote, chromedp.WaitVisible(chromedp.CSS("#option-a.chosen")))
		// Let a second vote, had one been sent, reach the store.
		time.Sleep(time.Second)
		if got := a.total(t); got != before+1 {
			t.Errorf("%s: a new visitor's first vote made %d voters, want 1", tt.name, got-before)
		}
		if got := text(t, vote, "#status"); got != "You voted for Cats. Choose another option to change your vote." {
			t.Errorf("%s: after the vote the page says %q", tt.name, got)
		}
		t.Logf("%s: %d votes sent", tt.name, posts.Load()-sent)
	}
	waitShows(t, res, tally{3, 0}, time.Now())
}

// TestButtonsDisabledWhileVoting: while a vote is in flight the page's buttons say they
// are disabled, and a click on another option sends nothing; once the answer is in they
// work again.
func TestButtonsDisabledWhileVoting(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	vote := newTab(t, browser)
	do(t, vote, chromedp.Navigate(a.voteURL()))
	// Hold every vote's request for 700 ms, so the test can look at the page meanwhile.
	eval[bool](t, vote, `(() => { const f = window.fetch;
  window.votesSent = 0;
  window.fetch = (...args) => { window.votesSent++; return new Promise((ok) => setTimeout(ok, 700)).then(() => f(...args)); };
  return true; })()`)
	do(t, vote, chromedp.Click(chromedp.CSS("#option-a")))
	state := `[...document.querySelectorAll("#ballot .option")].map((b) => b.getAttribute("aria-disabled")).join() + " " + document.getElementById("ballot").getAttribute("aria-busy")`
	if got := eval[string](t, vote, state); got != "true,true true" {
		t.Errorf("while the vote is in flight: aria-disabled and aria-busy are %q, want true,true true", got)
	}
	do(t, vote, chromedp.Click(chromedp.CSS("#option-b")))
	waitFor(t, vote, "the vote to be marked", `document.getElementById("option-a").classList.contains("chosen")`, 5*time.Second)
	if got := eval[string](t, vote, state); got != ", null" {
		t.Errorf("after the answer: aria-disabled and aria-busy are %q, want neither", got)
	}
	if got := eval[int](t, vote, `window.votesSent`); got != 1 {
		t.Errorf("%d votes sent for two clicks while the first was in flight, want 1", got)
	}
	do(t, vote, chromedp.Click(chromedp.CSS("#option-b")))
	waitFor(t, vote, "the changed vote to be marked", `document.getElementById("option-b").classList.contains("chosen")`, 5*time.Second)
	if got := a.total(t); got != 1 {
		t.Errorf("total %d, want 1", got)
	}
}
