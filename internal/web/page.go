package web

import (
	"html"
	"strings"
)

// The two pages are written in Go with this small builder rather than with html/template.
// Linking text/template (which html/template is built on) makes the Go linker keep every
// exported method of every type in the binary, because templates look methods up by name at
// run time: that cost 9 MB of a 31 MB binary, and the image has to stay under 20 MB.
// cmd/voting's TestNoTemplatesOrGRPCInBinary keeps it out. The pages are small and
// rendered once per state, so the Go code stays short; everything that comes from
// configuration or a request goes through Text, which escapes it.

// Page builds an HTML page.
type Page struct {
	b strings.Builder
}

// Raw appends the page's own markup, as is.
func (p *Page) Raw(markup ...string) *Page {
	for _, m := range markup {
		p.b.WriteString(m)
	}
	return p
}

// Text appends s escaped, for element content and quoted attribute values alike.
func (p *Page) Text(s string) *Page {
	p.b.WriteString(html.EscapeString(s))
	return p
}

// Join appends each of texts escaped, with the markup sep between them.
func (p *Page) Join(texts []string, sep string) *Page {
	for i, t := range texts {
		if i > 0 {
			p.Raw(sep)
		}
		p.Text(t)
	}
	return p
}

// Bytes returns the page.
func (p *Page) Bytes() []byte {
	return []byte(p.b.String())
}

// Head starts a page of the app: the document head with the page title, the favicon, and
// the service's stylesheet and script (by their versioned URLs), then the opening body tag.
// When static has an accent colour (Static.SetAccent), its stylesheet follows the service's.
func (p *Page) Head(title string, static *Static, css, js string) *Page {
	p.Raw(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>`).Text(title).Raw(`</title>
<link rel="icon" href="`).Text(static.URL("favicon.svg")).Raw(`" type="image/svg+xml">
<link rel="stylesheet" href="`).Text(static.URL(css)).Raw(`">
`)
	if static.has(AccentStylesheet) {
		p.Raw(`<link rel="stylesheet" href="`).Text(static.URL(AccentStylesheet)).Raw(`">
`)
	}
	return p.Raw(`<script src="`).Text(static.URL(js)).Raw(`" defer></script>
</head>
<body>
`)
}

// DrillNotices writes a notice for each drill fault that is on (package fault), so that a
// person who sees errors or slowness during a drill knows it is one, not a bug.
func (p *Page) DrillNotices(notices []string) *Page {
	for _, n := range notices {
		p.Raw(`<p class="drill" role="alert">`).Text(n).Raw("</p>\n")
	}
	return p
}
