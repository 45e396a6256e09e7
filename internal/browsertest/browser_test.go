package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Viewports of the screenshots and layout checks.
const (
	desktopW, desktopH = 1280, 800
	phoneW, phoneH     = 390, 844
)

// maxUpdate is how long a vote may take to show on an open results page. The real target
// lives in the benchmark; this bound only catches a push that does not happen.
const maxUpdate = 2 * time.Second

// newBrowser starts a headless Chromium with a fresh profile, stopped at cleanup.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	requireBrowser(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(desktopW, desktopH),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	// The first Run starts the browser, which lives as long as bctx: no timeout here.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium %s: %v", chromium, err)
	}
	return bctx
}

// newTab opens a tab of the browser. Tabs share cookies: one browser is one voter.
//
// Until the test ends, an uncaught exception on the tab's pages, or a message about the
// Content-Security-Policy refusing something, fails the test: both are bugs of the pages.
// Network errors are not, since some tests stop the server on purpose.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("open tab: %v", err)
	}
	var (
		mu   sync.Mutex
		bugs []string
	)
	done := make(chan struct{})
	messages := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy") {
				mu.Lock()
				bugs = append(bugs, fmt.Sprintf("%s %s:%d: %s", m.Type, m.URL, m.Line, m.Text))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bugs {
			t.Errorf("browser console: %s", b)
		}
	})
	return ctx
}

// do runs actions on a tab, failing the test on an error or after 20 s.
func do(t *testing.T, tab context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression on a tab.
func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until expr is true on the tab, checking on every change of the page.
func waitFor(t *testing.T, tab context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting %s for %s: %v", timeout, what, err)
	}
}

// eventually evaluates expr on the tab until it is true. Unlike waitFor it needs no script
// of the page's own, so it works on a tab with JavaScript disabled, and it sees changes
// that are not DOM mutations, such as the end of a CSS transition.
func eventually(t *testing.T, tab context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !eval[bool](t, tab, expr) {
		if time.Now().After(deadline) {
			t.Errorf("waited %s for %s", timeout, what)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends one protocol command to a tab.
func call[P, R any](c cdp.Command[P, R], p P) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, c, p)
		return err
	})
}

// disableJavaScript turns off the page's scripts on a tab, as a browser with JavaScript
// disabled would; the test can still inspect the page through the protocol.
func disableJavaScript() chromedp.Action[chromedp.Void] {
	return call(emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
}

// accessible lists what assistive technology finds on the tab's page, from the browser's
// accessibility tree: `role "name"` for each form, button and status, with a button's
// pressed state.
func accessible(t *testing.T, tab context.Context) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	tree, err := chromedp.Run(ctx, func(ctx context.Context, target *chromedp.Target) (accessibility.GetFullAXTreeResult, error) {
		return cdp.Call(ctx, target, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	})
	if err != nil {
		t.Fatalf("accessibility tree: %v", err)
	}
	str := func(v *accessibility.Value) string {
		var s string
		if v != nil {
			_ = json.Unmarshal([]byte(v.Value), &s) // a role or name is a JSON string
		}
		return s
	}
	var out []string
	for _, n := range tree.Nodes {
		role := str(n.Role)
		if n.Ignored || (role != "form" && role != "button" && role != "status") {
			continue
		}
		line := fmt.Sprintf("%s %q", role, str(n.Name))
		for _, p := range n.Properties {
			if p.Name == accessibility.PropertyNamePressed {
				line += " pressed=" + strings.Trim(string(p.Value.Value), `"`)
			}
		}
		out = append(out, line)
	}
	return out
}

// colorScheme makes the tab's pages see prefers-color-scheme as scheme ("light" or "dark").
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
}

// newVoter forgets the browser's cookies, so its next vote is a new voter's.
func newVoter() chromedp.Action[chromedp.Void] {
	return call(network.ClearBrowserCookies, cdp.Empty{})
}

// tally is what the results page should show.
type tally struct {
	a, b int
}

func (w tally) total() int { return w.a + w.b }

// showsExpr is true once the results page shows w in numbers, bars and chart; it evaluates
// to the time (Unix ms, the same clock as the test's) at which it did.
func (w tally) showsExpr() string {
	return fmt.Sprintf(`(() => {
  const want = {a: %d, b: %d}, total = %d;
  const res = document.getElementById("results");
  if (res.dataset.total !== String(total)) return false;
  const tot = document.getElementById("total").textContent;
  if (total === 0 ? tot !== "No votes yet" : !tot.startsWith(total + " vote")) return false;
  for (const [id, n] of Object.entries(want)) {
    const row = res.querySelector('.row[data-option="' + id + '"]');
    if (row.querySelector(".count").textContent !== String(n)) return false;
    const pct = total ? n * 100 / total : 0;
    if (row.querySelector(".percent").textContent !== pct.toFixed(1) + "%%") return false;
    if (Math.abs(parseFloat(row.querySelector(".fill").getAttribute("width")) - pct) > 0.01) return false;
    const line = document.querySelector('#history g.series[data-option="' + id + '"]');
    if (!line || line.dataset.count !== String(n)) return false;
  }
  return Date.now();
})()`, w.a, w.b, w.total())
}

// waitShows waits until the results page shows w and returns how long after since it did.
// It fails the test when that took longer than maxUpdate.
func waitShows(t *testing.T, results context.Context, w tally, since time.Time) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(results, 15*time.Second)
	defer cancel()
	// Poll longer than maxUpdate so that a slow update is reported with its real latency.
	ms, err := chromedp.Run(ctx, chromedp.Poll[float64](w.showsExpr(), chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("results page did not show %+v within 10s: %v\npage shows: %s", w, err, shown(t, results))
	}
	d := time.UnixMilli(int64(ms)).Sub(since)
	if d > maxUpdate {
		t.Errorf("results page showed %+v after %s, want at most %s", w, d, maxUpdate)
	}
	return d
}

// shown describes what the results page shows, for failure messages.
func shown(t *testing.T, results context.Context) string {
	return eval[string](t, results, `JSON.stringify({total: document.getElementById("results").dataset.total,
  text: document.getElementById("total").textContent,
  rows: [...document.querySelectorAll(".row")].map(r => r.dataset.option + "=" + r.querySelector(".count").textContent),
  connection: document.body.dataset.connection})`)
}

// contrastExpr lists the visible texts of the page whose contrast with their background is
// below WCAG AA: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). Backgrounds are
// composed from the element up to the root; opacity is applied to the text. The pages use
// no background images or gradients behind text, which this does not see.
const contrastExpr = `(() => {
  const parse = (s) => {
    const m = /rgba?\(([^)]+)\)/.exec(s);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const background = (el) => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) bg = over(c, bg);
    }
    return bg;
  };
  const bad = [];
  let checked = 0;
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode()); ) {
    const text = n.textContent.trim();
    const el = n.parentElement;
    if (!text || !el || el.closest("noscript")) continue;
    if (!el.checkVisibility({ visibilityProperty: true })) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const cs = getComputedStyle(el);
    let fg = parse(el instanceof SVGElement ? cs.fill : cs.color);
    if (!fg) { bad.push({ text, why: "unreadable colour " + cs.color }); continue; }
    let opacity = 1;
    for (let e = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
    const bg = background(el);
    fg = over([fg[0], fg[1], fg[2], fg[3] * opacity], bg);
    const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const r = ratio(fg, bg);
    checked++;
    if (r < need) bad.push({ text: text.slice(0, 40), ratio: Math.round(r * 100) / 100, need, fg: fg.slice(0, 3).map(Math.round), bg: bg.slice(0, 3).map(Math.round) });
  }
  return JSON.stringify({ checked, bad });
})()`

// checkContrast fails the test for every text on the tab's page below WCAG AA contrast.
func checkContrast(t *testing.T, tab context.Context, page string) {
	t.Helper()
	var res struct {
		Checked int
		Bad     []map[string]any
	}
	if err := json.Unmarshal([]byte(eval[string](t, tab, contrastExpr)), &res); err != nil {
		t.Fatal(err)
	}
	if res.Checked < 3 {
		t.Errorf("%s: contrast check saw only %d texts", page, res.Checked)
	}
	for _, b := range res.Bad {
		t.Errorf("%s: text below WCAG AA contrast: %v", page, b)
	}
}

// layoutExpr reports what breaks a page on a small screen: content wider than the viewport,
// and controls smaller than a finger (44 px, WCAG 2.5.5) or outside the viewport's width.
const layoutExpr = `(() => {
  const bad = [];
  const vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw) bad.push("page is " + document.documentElement.scrollWidth + "px wide in a " + vw + "px viewport");
  for (const e of document.querySelectorAll("button, a, input")) {
    const r = e.getBoundingClientRect();
    if (r.width < 44 || r.height < 44) bad.push((e.id || e.tagName) + " is " + Math.round(r.width) + "x" + Math.round(r.height));
    if (r.left < 0 || r.right > vw) bad.push((e.id || e.tagName) + " sticks out of the viewport");
  }
  return bad;
})()`

// setViewport sizes the tab like a desktop window or, with mobile, like a phone (the page's
// viewport meta tag applies, as on a phone).
func setViewport(w, h int64, mobile bool) chromedp.Action[chromedp.Void] {
	if mobile {
		return chromedp.EmulateViewport(w, h, chromedp.EmulateMobile)
	}
	return chromedp.EmulateViewport(w, h)
}

// screenshot writes a full-page PNG of the tab as name: into docs/screenshots with
// -update-screenshots, and into the test's artifact directory otherwise (kept with
// `go test -artifacts -outputdir=DIR`).
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := t.ArtifactDir()
	if *updateScreenshots {
		dir = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}
