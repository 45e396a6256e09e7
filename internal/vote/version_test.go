package vote_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/memqueue"
	"github.com/votingapp/voting/internal/vote"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// answer sends one request to srv and returns the answer with its body read.
func answer(t *testing.T, srv *httptest.Server, method, path, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestVersionLabelAndAccent: with a version label and an accent colour, the page shows the
// label (escaped) and links the accent's stylesheet, and every answer (pages, votes,
// assets, errors, refusals) carries the label in its header.
func TestVersionLabelAndAccent(t *testing.T) {
	svc := newService(t, "a=Cats,b=Dogs", vote.Config{VersionLabel: `v2 <b>"canary"</b>`, AccentColor: "#0A7D4F", RateLimit: 0.001, RateBurst: 3},
		memqueue.New(memqueue.Config{}))
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	_, page := answer(t, srv, "GET", "/", "")
	if want := `<p class="version" id="version"><span class="visually-hidden">Version </span>v2 &lt;b&gt;&#34;canary&#34;&lt;/b&gt;</p>`; !strings.Contains(page, want) {
		t.Errorf("page lacks the escaped badge %s:\n%s", want, page)
	}
	if strings.Contains(page, "<b>") {
		t.Errorf("the label became markup:\n%s", page)
	}
	css := regexp.MustCompile(`href="(/static/accent\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(page)
	if css == nil {
		t.Fatalf("page links no accent stylesheet:\n%s", page)
	}
	if resp, body := answer(t, srv, "GET", css[1], ""); resp.StatusCode != 200 || !strings.Contains(body, "--accent: #0a7d4f;") {
		t.Errorf("GET %s: %s %q", css[1], resp.Status, body)
	}

	form := "application/x-www-form-urlencoded"
	for _, r := range []struct {
		method, path, body string
		header             []string
		code               int
	}{
		{"GET", "/", "", nil, 200},
		{"POST", "/", "vote=a", []string{"Content-Type", form, "Sec-Fetch-Site", "cross-site"}, 403},
		{"POST", "/", "vote=a", []string{"Content-Type", form}, 200},
		{"POST", "/api/vote", `{"vote":"zz"}`, []string{"Content-Type", "application/json"}, 400},
		{"POST", "/", "vote=a", []string{"Content-Type", form}, 429}, // past the burst of 3
		{"GET", "/api/options", "", nil, 200},
		{"GET", "/static/vote.css", "", nil, 200},
		{"GET", "/no/such/page", "", nil, 404},
		{"DELETE", "/", "", nil, 405},
	} {
		resp, _ := answer(t, srv, r.method, r.path, r.body, r.header...)
		if resp.StatusCode != r.code {
			t.Errorf("%s %s: %s, want %d", r.method, r.path, resp.Status, r.code)
		}
		if got := resp.Header.Values(web.VersionHeader); len(got) != 1 || got[0] != `v2 <b>"canary"</b>` {
			t.Errorf("%s %s (%d): %s = %q, want the label", r.method, r.path, resp.StatusCode, web.VersionHeader, got)
		}
	}
}

// TestNoVersionByDefault: without a label or colour the page has no badge and links no
// accent stylesheet, and no answer carries the header: the page is what it always was.
func TestNoVersionByDefault(t *testing.T) {
	srv, _ := newTestService(t)
	resp, page := answer(t, srv, "GET", "/", "")
	if _, ok := resp.Header[web.VersionHeader]; ok {
		t.Errorf("%s is set without a label", web.VersionHeader)
	}
	if strings.Contains(page, `class="version"`) || strings.Contains(page, "accent") || !strings.Contains(page, "<main>\n  <p class=\"eyebrow\">Cast your vote</p>") {
		t.Errorf("page changed without a label or colour:\n%s", page)
	}
	resp, _ = answer(t, srv, "POST", "/", url.Values{"vote": {"a"}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if _, ok := resp.Header[web.VersionHeader]; ok || resp.StatusCode != 200 {
		t.Errorf("vote: %s, %s set: %v", resp.Status, web.VersionHeader, ok)
	}
}

// TestConfigRefusesBadVersionOrColour: a label that cannot go into a header and a colour that
// is not one are refused by Validate (and New), with messages that say what is wanted.
func TestConfigRefusesBadVersionOrColour(t *testing.T) {
	opts, _ := voting.ParseOptions(voting.DefaultOptions)
	cfg := vote.Config{Options: opts, VoterKeys: [][]byte{[]byte(testKey)}, VersionLabel: "v2\nX-Injected: 1", AccentColor: "#fff;} body{display:none"}
	err := cfg.Validate()
	for _, want := range []string{`version label "v2\nX-Injected: 1": want printable ASCII`, `accent colour "#fff;} body{display:none": want #rgb, #rrggbb`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %s", err, want)
		}
	}
	if _, err := vote.New(cfg, memqueue.New(memqueue.Config{}), nil, nil); err == nil {
		t.Error("New took the bad settings")
	}
	cfg.VersionLabel, cfg.AccentColor = "green", "green"
	if err := cfg.Validate(); err != nil {
		t.Errorf("a good label and colour: %v", err)
	}
}
