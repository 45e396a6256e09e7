package result

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/voting"
)

func TestPageShowsTheNumbersAndEscapesLabels(t *testing.T) {
	opts, err := voting.ParseOptions(`a=<i>Cats</i>,b=Dogs & "co"`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Options: opts, Instance: "<host>"}, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		counts map[string]int64
		want   []string
	}{
		{nil, []string{`data-total="0"`, `<span class="percent">0.0%</span>`, `<span class="count">0</span> <span class="unit">votes</span>`, `No votes yet`}},
		{map[string]int64{"a": 1, "b": 2}, []string{
			`data-total="3"`,
			`<span class="percent">33.3%</span>`, `width="33.33%"`, `<span class="count">1</span> <span class="unit">vote</span>`,
			`<span class="percent">66.7%</span>`, `width="66.67%"`, `<span class="count">2</span> <span class="unit">votes</span>`,
			`<span id="total-count">3</span> votes in total`,
		}},
	} {
		page := string(s.renderPage(snapshot{Result: opts.Result(tc.counts)}))
		for _, want := range append(tc.want,
			`<title>&lt;i&gt;Cats&lt;/i&gt; vs Dogs &amp; &#34;co&#34; — results</title>`,
			`<h1>&lt;i&gt;Cats&lt;/i&gt; <span class="vs">vs</span> Dogs &amp; &#34;co&#34;</h1>`,
			`<span class="label">&lt;i&gt;Cats&lt;/i&gt;</span>`,
			`<span class="swatch"></span>Dogs &amp; &#34;co&#34;</span>`,
			`<code id="instance">&lt;host&gt;</code>`,
		) {
			if !strings.Contains(page, want) {
				t.Errorf("%v: page lacks %q", tc.counts, want)
			}
		}
		if strings.Contains(page, "<i>") {
			t.Errorf("a label became markup:\n%s", page)
		}
	}
}
