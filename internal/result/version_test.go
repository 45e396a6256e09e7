package result_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/result"
	"github.com/votingapp/voting/internal/sqlitestore"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// newVersioned returns a running result service with a version label and an accent colour,
// and its server.
func newVersioned(t *testing.T, label, color string) *httptest.Server {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts, _ := voting.ParseOptions(voting.DefaultOptions)
	svc, err := result.New(result.Config{Options: opts, PollInterval: time.Hour, VersionLabel: label, AccentColor: color},
		st, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return srv
}

// roundTrip sends one request, with the headers given as name, value pairs, and returns the
// answer with its body (none for a WebSocket handshake that succeeded).
func roundTrip(t *testing.T, method, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestVersionLabelAndAccent: the results page shows the label (escaped) and links the accent
// stylesheet, and every answer carries the label, the WebSocket handshake included.
func TestVersionLabelAndAccent(t *testing.T) {
	const label = `green & <i>new</i>`
	srv := newVersioned(t, label, "green")
	_, page := roundTrip(t, "GET", srv.URL+"/")
	if want := `<p class="version" id="version"><span class="visually-hidden">Version </span>green &amp; &lt;i&gt;new&lt;/i&gt;</p>`; !strings.Contains(page, want) {
		t.Errorf("page lacks the escaped badge %s:\n%s", want, page)
	}
	if strings.Contains(page, "<i>") {
		t.Errorf("the label became markup:\n%s", page)
	}
	css := regexp.MustCompile(`href="(/static/accent\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(page)
	if css == nil {
		t.Fatalf("page links no accent stylesheet:\n%s", page)
	}
	if resp, body := roundTrip(t, "GET", srv.URL+css[1]); resp.StatusCode != 200 || !strings.Contains(body, "--accent: #15803d;") {
		t.Errorf("GET %s: %s %q", css[1], resp.Status, body)
	}

	ws := []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}
	for _, r := range []struct {
		method, path string
		header       []string
		code         int
	}{
		{"GET", "/", nil, 200},
		{"GET", "/api/results", nil, 200},
		{"GET", "/static/result.js", nil, 200},
		{"GET", "/ws", ws, 101},
		{"GET", "/ws", append(ws, "Origin", "https://evil.example"), 403},
		{"GET", "/nothing", nil, 404},
		{"POST", "/api/results", nil, 405},
	} {
		resp, _ := roundTrip(t, r.method, srv.URL+r.path, r.header...)
		if resp.StatusCode != r.code {
			t.Errorf("%s %s: %s, want %d", r.method, r.path, resp.Status, r.code)
		}
		if got := resp.Header.Values(web.VersionHeader); len(got) != 1 || got[0] != label {
			t.Errorf("%s %s (%d): %s = %q, want the label", r.method, r.path, resp.StatusCode, web.VersionHeader, got)
		}
	}
}

// TestNoVersionByDefault: without a label or colour the page is what it always was, and no
// answer carries the header.
func TestNoVersionByDefault(t *testing.T) {
	srv := newVersioned(t, "", "")
	resp, page := roundTrip(t, "GET", srv.URL+"/")
	if _, ok := resp.Header[web.VersionHeader]; ok {
		t.Errorf("%s is set without a label", web.VersionHeader)
	}
	if strings.Contains(page, `class="version"`) || strings.Contains(page, "accent") || !strings.Contains(page, "    <div>\n      <p class=\"eyebrow\">Live results</p>") {
		t.Errorf("page changed without a label or colour:\n%s", page)
	}
}

// TestConfigRefusesBadVersionOrColour: Validate (and New) refuse a label that cannot go into
// a header and a colour that is not one, saying what is wanted.
func TestConfigRefusesBadVersionOrColour(t *testing.T) {
	opts, _ := voting.ParseOptions(voting.DefaultOptions)
	cfg := result.Config{Options: opts, VersionLabel: strings.Repeat("v", 33), AccentColor: "rgb(1,2,3)"}
	err := cfg.Validate()
	for _, want := range []string{"is 33 characters long, want at most 32", `accent colour "rgb(1,2,3)": want #rgb, #rrggbb (hex digits) or one of blue,`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %s", err, want)
		}
	}
	if _, err := result.New(cfg, nil, nil, nil); err == nil {
		t.Error("New took the bad settings")
	}
}
