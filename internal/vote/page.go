package vote

import (
	"strconv"
	"strings"

	"github.com/votingapp/voting/internal/web"
)

// pageData is what the page shows besides the configuration.
type pageData struct {
	Choice string // the option this browser voted for, "" before voting
	Error  string
	Drills []string // the notices of the drill faults that are on (never in the cached pages)
}

// renderPage renders the voting page (see web.Page for why it is Go code). Without
// JavaScript it is a form whose buttons post the choice; the script (assets/static/vote.js)
// sends the same form with fetch and updates the chosen/dimmed states in place.
func (s *Service) renderPage(d pageData) []byte {
	opts := s.cfg.Options
	p := new(web.Page).Head(strings.Join(opts.Labels(), " vs ")+" — vote", s.static, "vote.css", "vote.js")
	p.Raw("<main>\n").VersionBadge(s.cfg.VersionLabel).DrillNotices(d.Drills).Raw(`  <p class="eyebrow">Cast your vote</p>
  <h1 id="question">`).Join(opts.Labels(), ` <span class="vs">vs</span> `).Raw(`</h1>
  <form id="ballot" method="post" action="/" aria-labelledby="question" aria-describedby="status" data-choice="`).Text(d.Choice).Raw(`"`)
	if d.Choice != "" {
		p.Raw(` class="voted"`)
	}
	p.Raw(">\n")
	for i, o := range opts {
		chosen := o.ID == d.Choice
		p.Raw(`    <button type="submit" name="vote" value="`).Text(o.ID).Raw(`" id="option-`).Text(o.ID).Raw(`" class="option`)
		if chosen {
			p.Raw(` chosen`)
		}
		p.Raw(`" data-index="`, strconv.Itoa(i), `" aria-pressed="`, strconv.FormatBool(chosen), `">
      <span class="tick" aria-hidden="true"><svg viewBox="0 0 24 24" width="24" height="24" focusable="false"><path d="M5 12.5l4.5 4.5L19 7.5"/></svg></span>
      <span class="label">`).Text(o.Label).Raw(`</span>
      <span class="your-vote" aria-hidden="true">Your vote</span>
    </button>
`)
	}
	p.Raw(`  </form>
  <p id="status" role="status" aria-live="polite">`)
	switch {
	case d.Error != "":
		p.Raw(`<span class="error">`).Text(d.Error).Raw(`</span>`)
	case d.Choice != "":
		p.Raw(`You voted for <strong>`).Text(opts.Label(d.Choice)).Raw(`</strong>. Choose another option to change your vote.`)
	default:
		p.Raw(`Choose an option to vote.`)
	}
	p.Raw(`</p>
</main>
<footer>Processed by instance <code id="instance">`).Text(s.cfg.Instance).Raw(`</code></footer>
</body>
</html>
`)
	return p.Bytes()
}
