package browsertest

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDrillNotice: with a drill fault on, the vote page says so in a readable notice, and a
// vote refused by it says it was not recorded, as any refused vote does.
func TestDrillNotice(t *testing.T) {
	a := startApp(t, "--fault-vote-error-ratio=1")
	vote := newTab(t, newBrowser(t))
	do(t, vote, chromedp.Navigate(a.voteURL()))
	if got := text(t, vote, ".drill"); got != "A drill is on: 100% of votes are answered with an error on purpose (not counted; try again)." {
		t.Errorf("the vote page's drill notice says %q", got)
	}
	do(t, vote, chromedp.Click(chromedp.CSS("#option-a")))
	waitFor(t, vote, "the vote page to say the vote failed", `document.querySelector("#status .error") !== null`, 5*time.Second)
	if got := text(t, vote, "#status"); !strings.HasPrefix(got, "Your vote was not recorded") {
		t.Errorf("a vote refused by the drill: the page says %q", got)
	}
	checkContrast(t, vote, "vote page, a drill on")
	screenshot(t, vote, "vote-drill-desktop.png")
}
