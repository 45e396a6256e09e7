package browsertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestVersionBadgeAndAccent starts the app with a version label and an accent colour and
// checks, on both pages, light and dark, desktop and phone: the badge shows the label (as
// text: "<canary>" made markup would show nothing) and is read as "Version <label>", the accent colours the badge and the
// bar along the top, the badge's text meets WCAG AA on it, and the layout holds. The colour
// is a light one, so the badge's text must be black; screenshots of each page are kept.
func TestVersionBadgeAndAccent(t *testing.T) {
	const label, accent, accentRGB = "v2 <canary>", "#FBBF24", "rgb(251, 191, 36)"
	a := startApp(t, "--version-label="+label, "--accent-color="+accent)
	browser := newBrowser(t)
	vote := newTab(t, browser)
	do(t, vote, chromedp.Navigate(a.voteURL()))
	res := openResults(t, browser, a)

	for _, v := range []struct {
		name   string
		w, h   int64
		mobile bool
		scheme string
	}{
		{"desktop", desktopW, desktopH, false, "light"},
		{"phone-dark", phoneW, phoneH, true, "dark"},
	} {
		for _, p := range []struct {
			name string
			tab  context.Context
		}{{"vote", vote}, {"result", res}} {
			where := p.name + " page, " + v.name
			do(t, p.tab, setViewport(v.w, v.h, v.mobile), colorScheme(v.scheme), chromedp.Sleep(300*time.Millisecond))
			if got := text(t, p.tab, "#version"); got != "Version "+label {
				t.Errorf("%s: badge says %q, want %q", where, got, "Version "+label)
			}
			got := eval[map[string]any](t, p.tab, `(() => {
  const b = document.getElementById("version"), r = b.getBoundingClientRect(), cs = getComputedStyle(b);
  return {visible: b.checkVisibility() && r.width > 0 && r.height > 0 && r.top >= 0 && r.bottom <= innerHeight,
    markup: b.querySelector("canary") !== null, background: cs.backgroundColor, color: cs.color,
    bar: getComputedStyle(document.body).boxShadow,
    hiddenWidth: b.querySelector(".visually-hidden").getBoundingClientRect().width};
})()`)
			if got["visible"] != true || got["markup"] != false {
				t.Errorf("%s: badge visible in the first screen %v, label made markup %v", where, got["visible"], got["markup"])
			}
			if got["background"] != accentRGB || got["color"] != "rgb(0, 0, 0)" {
				t.Errorf("%s: badge %v on %v, want black on the accent %s", where, got["color"], got["background"], accentRGB)
			}
			if bar := fmt.Sprint(got["bar"]); !strings.Contains(bar, accentRGB) || !strings.Contains(bar, "inset") {
				t.Errorf("%s: the top bar is %q, want an inset shadow in %s", where, bar, accentRGB)
			}
			if w, _ := got["hiddenWidth"].(float64); w > 1 {
				t.Errorf("%s: the screen reader's \"Version\" shows (%v px wide)", where, w)
			}
			if bad := eval[[]string](t, p.tab, layoutExpr); len(bad) > 0 {
				t.Errorf("%s: %s", where, strings.Join(bad, "; "))
			}
			checkContrast(t, p.tab, where)
			screenshot(t, p.tab, p.name+"-version-"+v.name+".png")
		}
	}
}

// TestNoBadgeByDefault: without a label or colour neither page has a badge or a coloured
// bar: the pages look as they always did.
func TestNoBadgeByDefault(t *testing.T) {
	a := startApp(t)
	browser := newBrowser(t)
	vote := newTab(t, browser)
	do(t, vote, chromedp.Navigate(a.voteURL()))
	res := openResults(t, browser, a)
	for name, tab := range map[string]context.Context{"vote": vote, "result": res} {
		got := eval[map[string]any](t, tab, `({badge: document.getElementById("version") !== null,
  bar: getComputedStyle(document.body).boxShadow,
  accent: getComputedStyle(document.documentElement).getPropertyValue("--accent")})`)
		if got["badge"] != false || got["accent"] != "" || got["bar"] != "rgba(0, 0, 0, 0) 0px 6px 0px 0px inset" && got["bar"] != "none" {
			t.Errorf("%s page without a label or colour: %v, want no badge, no accent and no visible bar", name, got)
		}
	}
}
