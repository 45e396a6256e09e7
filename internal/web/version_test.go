package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestCheckVersionLabel(t *testing.T) {
	for _, ok := range []string{"", "v2", "1.4.0-canary+build.7", "green", `<b>"x" & 'y'</b>`, "a b", strings.Repeat("x", MaxVersionLabelLen)} {
		if err := CheckVersionLabel(ok); err != nil {
			t.Errorf("CheckVersionLabel(%q): %v", ok, err)
		}
	}
	for label, want := range map[string]string{
		strings.Repeat("x", MaxVersionLabelLen+1): "at most 32",
		"grün":            "printable ASCII",
		"v2\r\nX-Evil: 1": "printable ASCII",
		"tab\there":       "printable ASCII",
		"\x7f":            "printable ASCII",
		" v2":             "start or end with a space",
		"v2 ":             "start or end with a space",
	} {
		err := CheckVersionLabel(label)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "version label") {
			t.Errorf("CheckVersionLabel(%q) = %v, want an error naming the version label and saying %q", label, err, want)
		}
	}
}

func TestParseAccentColor(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "#abc": "#aabbcc", "#ABC": "#aabbcc", "#0a7D4f": "#0a7d4f", "#000000": "#000000",
		"blue": "#2563eb", "green": "#15803d", "Green": "#15803d",
	} {
		got, err := ParseAccentColor(in)
		if err != nil || got != want {
			t.Errorf("ParseAccentColor(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// Anything else is refused, above all what would break out of the stylesheet.
	for _, bad := range []string{
		"#", "#ab", "#abcd", "#abcde", "#abcdef0", "#ggg", "abc", "aabbcc", "0x00ff00", "rgb(0,0,0)",
		"red;}", "#fff;} body{display:none", "#fff }", " #fff", "#fff\n", "url(x)", "var(--x)",
		"transparent", "currentColor", "lime", "#ＡＢＣ",
	} {
		got, err := ParseAccentColor(bad)
		if err == nil {
			t.Errorf("ParseAccentColor(%q) = %q, want an error", bad, got)
			continue
		}
		for _, want := range []string{"accent colour", "#rgb, #rrggbb", "blue"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseAccentColor(%q): error %q does not say %q", bad, err, want)
			}
		}
	}
}

// TestAccentTextContrast: the text colour on the accent meets WCAG AA (4.5:1) on every
// colour, checked on a grid over the whole RGB cube and on the named ones.
func TestAccentTextContrast(t *testing.T) {
	check := func(hex string) {
		on := 0.0 // luminance of #000
		if onAccent(hex) == "#fff" {
			on = 1
		}
		if r := contrast(luminance(hex), on); r < 4.5 {
			t.Errorf("%s: text %s has contrast %.2f, want at least 4.5", hex, onAccent(hex), r)
		}
	}
	for r := 0; r < 256; r += 15 {
		for g := 0; g < 256; g += 15 {
			for b := 0; b < 256; b += 15 {
				check(fmt.Sprintf("#%02x%02x%02x", r, g, b))
			}
		}
	}
	for _, n := range AccentNames() {
		hex, _ := ParseAccentColor(n)
		check(hex)
		if onAccent(hex) != "#fff" {
			t.Errorf("%s (%s): black text; the named colours are dark enough for white", n, hex)
		}
	}
}

func TestAccentStylesheet(t *testing.T) {
	newStatic := func() *Static {
		s, err := NewStatic(fstest.MapFS{
			"favicon.svg": {Data: []byte("<svg/>")},
			"a.css":       {Data: []byte("body{}")},
			"a.js":        {Data: []byte(";")},
		}, "/static/")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain := newStatic()
	if err := plain.SetAccent(""); err != nil {
		t.Fatal(err)
	}
	if page := string(new(Page).Head("t", plain, "a.css", "a.js").Bytes()); strings.Contains(page, "accent") {
		t.Errorf("without an accent the page links an accent stylesheet:\n%s", page)
	}

	s := newStatic()
	if err := s.SetAccent("#ABC"); err != nil {
		t.Fatal(err)
	}
	page := string(new(Page).Head("t", s, "a.css", "a.js").Bytes())
	link := `<link rel="stylesheet" href="` + s.URL(AccentStylesheet) + `">`
	if !strings.Contains(page, link) || strings.Index(page, link) < strings.Index(page, "a.css") {
		t.Errorf("the accent stylesheet is not linked after the page's own:\n%s", page)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", s.URL(AccentStylesheet), nil))
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, "--accent: #aabbcc;") || !strings.Contains(body, "--on-accent: #000;") ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Errorf("GET %s: %d %q %q", s.URL(AccentStylesheet), rec.Code, rec.Header().Get("Content-Type"), body)
	}
	if err := newStatic().SetAccent("red;}"); err == nil {
		t.Error("SetAccent took a colour that is none")
	}
}

func TestWithVersion(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("page")) })
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
	for _, path := range []string{"/", "/fail", "/no/such/page"} {
		rec := httptest.NewRecorder()
		WithVersion("v2 <canary>", mux).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if got := rec.Header().Values(VersionHeader); len(got) != 1 || got[0] != "v2 <canary>" {
			t.Errorf("GET %s (%d): %s = %q, want [v2 <canary>]", path, rec.Code, VersionHeader, got)
		}
		rec = httptest.NewRecorder()
		WithVersion("", mux).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if _, ok := rec.Header()[VersionHeader]; ok {
			t.Errorf("GET %s without a label: %s is set", path, VersionHeader)
		}
	}
}

func TestVersionBadgeEscapes(t *testing.T) {
	if got := string(new(Page).VersionBadge("").Bytes()); got != "" {
		t.Errorf("no label: got %q, want nothing", got)
	}
	got := string(new(Page).VersionBadge(`v2"><script>alert(1)</script>`).Bytes())
	if strings.Contains(got, "<script") || !strings.Contains(got, `v2&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</p>`) ||
		!strings.Contains(got, `<span class="visually-hidden">Version </span>`) {
		t.Errorf("badge: %s", got)
	}
}
