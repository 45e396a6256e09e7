package web

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestPageEscapesTextButNotMarkup(t *testing.T) {
	static, err := NewStatic(fstest.MapFS{
		"favicon.svg": {Data: []byte("<svg/>")},
		"a.css":       {Data: []byte("body{}")},
		"a.js":        {Data: []byte(";")},
	}, "/static/")
	if err != nil {
		t.Fatal(err)
	}
	got := string(new(Page).
		Head(`Tom & "Jerry" <3`, static, "a.css", "a.js").
		Raw(`<h1 class="x">`).Join([]string{"<b>", "O'Neil"}, ` <span>vs</span> `).Raw("</h1>").
		Text(`"><script>alert(1)</script>`).
		Bytes())
	for _, want := range []string{
		`<title>Tom &amp; &#34;Jerry&#34; &lt;3</title>`,
		`<link rel="stylesheet" href="/static/a.css?v=`,
		`<script src="/static/a.js?v=`,
		`<h1 class="x">&lt;b&gt; <span>vs</span> O&#39;Neil</h1>`,
		`&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "<script") != 1 {
		t.Errorf("text made markup:\n%s", got)
	}
}
