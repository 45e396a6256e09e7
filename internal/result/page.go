package result

import (
	"strconv"
	"strings"

	"github.com/votingapp/voting/internal/web"
)

// renderPage renders the results page with the numbers of snap (see web.Page for why it is
// Go code), so it is complete without JavaScript; the script (assets/static/result.js) then
// keeps it live over the WebSocket, and draws the votes-over-time chart it fills in.
func (s *Service) renderPage(snap snapshot) []byte {
	res := snap.Result
	labels := s.cfg.Options.Labels()
	p := new(web.Page).Head(strings.Join(labels, " vs ")+" — results", s.static, "result.css", "result.js")
	p.Raw(`<main>
  <div id="drills">`).DrillNotices(snap.Drills).Raw(`</div>
  <header>
    <div>
`).VersionBadge(s.cfg.VersionLabel).Raw(`      <p class="eyebrow">Live results</p>
      <h1>`).Join(labels, ` <span class="vs">vs</span> `).Raw(`</h1>
    </div>
    <p id="connection" class="conn connecting" role="status" hidden><span class="dot" aria-hidden="true"></span><span class="text">Connecting…</span></p>
  </header>
  <section id="results" aria-label="Votes per option" data-total="`, itoa(res.Total), `">
`)
	for i, o := range res.Options {
		p.Raw(`    <div class="row" data-option="`).Text(o.ID).Raw(`" data-index="`, strconv.Itoa(i), `">
      <div class="head">
        <span class="label">`).Text(o.Label).Raw(`</span>
        <span class="percent">`, strconv.FormatFloat(o.Percent, 'f', 1, 64), `%</span>
      </div>
      <svg class="bar" width="100%" height="20" aria-hidden="true" focusable="false"><rect class="track" width="100%" height="100%" rx="10"/><rect class="fill" width="`, strconv.FormatFloat(o.Percent, 'f', 2, 64), `%" height="100%" rx="10"/></svg>
      <p class="votes"><span class="count">`, itoa(o.Count), `</span> <span class="unit">`, plural(o.Count, "vote", "votes"), `</span></p>
    </div>
`)
	}
	p.Raw(`  </section>
  <p id="total" class="total">`)
	if res.Total > 0 {
		p.Raw(`<span id="total-count">`, itoa(res.Total), `</span> `, plural(res.Total, "vote", "votes"), ` in total`)
	} else {
		p.Raw(`No votes yet`)
	}
	// Whether counting is up to date (see pipeline): a quiet line when it is, plain words
	// when not; hidden until the first tally says.
	p.Raw(`</p>
  <p id="pipeline" class="pipeline" role="status" data-state="`).Text(snap.Pipeline.State).Raw(`"`)
	if snap.Pipeline.State == "" {
		p.Raw(` hidden`)
	}
	p.Raw(`>`).Text(snap.Pipeline.Message).Raw(`</p>
  <noscript><p class="total">Reload the page to see new votes.</p></noscript>
  <figure id="timeline" hidden>
    <figcaption><span class="title">Votes over time</span>
      <span class="legend" aria-hidden="true">`)
	for i, o := range res.Options {
		p.Raw(`<span class="key" data-index="`, strconv.Itoa(i), `"><span class="swatch"></span>`).Text(o.Label).Raw(`</span>`)
	}
	p.Raw(`</span>
    </figcaption>
    <svg id="history" role="img" aria-label="Votes over time" data-points="0"></svg>
  </figure>
</main>
<footer>Served by instance <code id="instance">`).Text(s.cfg.Instance).Raw(`</code><span id="updated"></span></footer>
</body>
</html>
`)
	return p.Bytes()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
