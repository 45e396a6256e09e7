package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/web"
)

// TestVersionLabelEndToEnd: `voting all` with --version-label and VOTING_ACCENT_COLOR shows
// the label on both pages, sends it in the header of both servers' answers, logs both at
// start-up and exports both in voting_build_info.
func TestVersionLabelEndToEnd(t *testing.T) {
	app := startApp(t, map[string]string{"VOTING_ACCENT_COLOR": "#0A7D4F"}, []string{"vote", "result", "admin"},
		append([]string{"all", "--data-dir=" + t.TempDir(), "--version-label=v2-canary"}, loopback...)...)
	app.waitReady()
	for _, u := range []string{app.url("vote") + "/", app.url("result") + "/", app.url("result") + "/api/results", app.url("vote") + "/nothing"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get(web.VersionHeader); got != "v2-canary" {
			t.Errorf("GET %s: %s = %q, want v2-canary", u, web.VersionHeader, got)
		}
		if strings.HasSuffix(u, "/") && (!strings.Contains(string(body), `<span class="visually-hidden">Version </span>v2-canary</p>`) ||
			!strings.Contains(string(body), "/static/accent.css?v=")) {
			t.Errorf("GET %s: no badge or accent stylesheet:\n%s", u, body)
		}
	}
	if metrics := get(t, app.url("admin")+"/metrics"); !strings.Contains(metrics, `accent_color="#0A7D4F"`) || !strings.Contains(metrics, `version_label="v2-canary"`) {
		t.Errorf("voting_build_info lacks the label and colour:\n%s", grepLines(metrics, "voting_build_info"))
	}
	if !app.logs.contains(`"msg":"starting"`, `"version_label":"v2-canary"`, `"accent_color":"#0A7D4F"`) {
		t.Errorf("the start-up line does not show the label and colour:\n%s", app.logs)
	}
}

// TestVersionFlagsRefused: a bad label or colour stops each page service with a message that
// says what is wanted, once even in `voting all`, where vote and result both check it.
func TestVersionFlagsRefused(t *testing.T) {
	for _, cmd := range []string{"vote", "result", "all"} {
		var stderr strings.Builder
		code := run(context.Background(), []string{"voting", cmd, "--accent-color=red;}", "--version-label=über"},
			func(string) string { return "" }, io.Discard, &stderr)
		for _, want := range []string{`accent colour "red;}": want #rgb, #rrggbb`, `version label "über": want printable ASCII`} {
			if code != 1 || strings.Count(stderr.String(), want) != 1 {
				t.Errorf("voting %s: exit %d, stderr %q: want exit 1 and %q once", cmd, code, stderr.String(), want)
			}
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
