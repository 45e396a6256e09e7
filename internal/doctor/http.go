package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/votingapp/voting/internal/voting"
)

// maxBody bounds what doctor reads of an answer: the services' JSON is small, and something
// else at that URL must not make doctor read a page of megabytes.
const maxBody = 1 << 20

// answer is an HTTP answer, read whole.
type answer struct {
	status int
	body   []byte
}

// get GETs base+path within the timeout on a connection of its own, and explains a failure
// to get any answer.
func get(ctx context.Context, cfg Config, s service, base, path string) (*answer, *problem) {
	tr := newTrace(cfg.Timeout)
	client := &http.Client{Transport: &http.Transport{
		// No proxy: doctor checks the path from here to the service, as the services' own
		// clients take it, not a proxy's.
		Proxy:                 nil,
		DialContext:           tr.dial,
		DisableKeepAlives:     true,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
	}}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	u := strings.TrimSuffix(base, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &problem{CauseOther, fmt.Sprintf("GET %s: %v", u, err)}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err == nil {
			return &answer{resp.StatusCode, body}, nil
		}
	}
	if p := tr.netProblem(s, err); p != nil {
		return nil, p
	}
	return nil, &problem{CauseOther, fmt.Sprintf("GET %s failed: %v; check %s", u, err, s.flag)}
}

// httpService describes a web service's far end from its URL.
func httpService(what, rawURL, flag string) service {
	addr := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		addr = u.Host
		if u.Port() == "" {
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			addr = net.JoinHostPort(u.Hostname(), port)
		}
	}
	return service{what: what, addr: addr, flag: flag}
}

// adminOnly checks a service given no public URL: its /readyz when its admin URL is given,
// else nothing.
func adminOnly(ctx context.Context, cfg Config, hop, what, adminURL, urlFlag, adminFlag string) Hop {
	if adminURL == "" {
		return skippedHop(hop, "not checked: no "+urlFlag)
	}
	if p := readyz(ctx, cfg, what, adminURL, adminFlag); p != nil {
		return brokenHop(hop, adminURL, p)
	}
	return okHop(hop, adminURL, adminURL+"/readyz: ready")
}

// checkVote reads the vote service's options (GET /api/options): an answer proves the
// service is up and names its poll. Then its /readyz when the admin URL is given.
func checkVote(ctx context.Context, cfg Config) Hop {
	if cfg.VoteURL == "" {
		return adminOnly(ctx, cfg, HopVote, "the vote service", cfg.VoteAdminURL, "--vote-url", "--vote-admin-url")
	}
	s := httpService("the vote service", cfg.VoteURL, "--vote-url")
	a, p := get(ctx, cfg, s, cfg.VoteURL, "/api/options")
	if p != nil {
		return brokenHop(HopVote, cfg.VoteURL, p)
	}
	var body struct {
		Options []voting.Option `json:"options"`
	}
	switch {
	case a.status == http.StatusOK && json.Unmarshal(a.body, &body) == nil && len(body.Options) > 0:
	case a.status >= 500:
		return brokenHop(HopVote, cfg.VoteURL, failing("the vote service", cfg.VoteURL, "/api/options", a))
	default:
		return brokenHop(HopVote, cfg.VoteURL, wrongService("the vote service", cfg.VoteURL, "/api/options", a, "--vote-url", "8080"))
	}
	if p := readyzIfGiven(ctx, cfg, "the vote service", cfg.VoteAdminURL, "--vote-admin-url"); p != nil {
		return brokenHop(HopVote, cfg.VoteURL, p)
	}
	ids := make([]string, len(body.Options))
	for i, o := range body.Options {
		ids[i] = o.ID + " (" + o.Label + ")"
	}
	msg := fmt.Sprintf("%s answers: the voting page offers %s", cfg.VoteURL, strings.Join(ids, ", "))
	if cfg.VoteAdminURL != "" {
		msg += "; ready"
	}
	return okHop(HopVote, cfg.VoteURL, msg)
}

// checkResult reads the tally the result service serves (GET /api/results). 503 means it
// has not read the tally yet; then its /readyz when the admin URL is given.
func checkResult(ctx context.Context, cfg Config) Hop {
	if cfg.ResultURL == "" {
		return adminOnly(ctx, cfg, HopResult, "the result service", cfg.ResultAdminURL, "--result-url", "--result-admin-url")
	}
	s := httpService("the result service", cfg.ResultURL, "--result-url")
	a, p := get(ctx, cfg, s, cfg.ResultURL, "/api/results")
	if p != nil {
		return brokenHop(HopResult, cfg.ResultURL, p)
	}
	var res voting.Result
	switch {
	case a.status == http.StatusOK && json.Unmarshal(a.body, &res) == nil && len(res.Options) > 0:
	case a.status == http.StatusServiceUnavailable && isJSON(a.body):
		why := "it cannot read PostgreSQL (see the postgres line and result's /readyz), or it started a moment ago"
		if cfg.ResultAdminURL != "" {
			if rp := readyz(ctx, cfg, "the result service", cfg.ResultAdminURL, "--result-admin-url"); rp != nil {
				why = "its " + strings.TrimPrefix(rp.msg, "the result service answers but is not ready: its ")
			}
		}
		return brokenHop(HopResult, cfg.ResultURL, &problem{CauseNoTally, fmt.Sprintf("%s/api/results answered 503: the result service has not read the tally yet, so the page shows no results; %s",
			cfg.ResultURL, why)})
	case a.status >= 500:
		return brokenHop(HopResult, cfg.ResultURL, failing("the result service", cfg.ResultURL, "/api/results", a))
	default:
		return brokenHop(HopResult, cfg.ResultURL, wrongService("the result service", cfg.ResultURL, "/api/results", a, "--result-url", "8081"))
	}
	if p := readyzIfGiven(ctx, cfg, "the result service", cfg.ResultAdminURL, "--result-admin-url"); p != nil {
		return brokenHop(HopResult, cfg.ResultURL, p)
	}
	counts := make([]string, len(res.Options))
	for i, o := range res.Options {
		counts[i] = fmt.Sprintf("%s %d", o.ID, o.Count)
	}
	msg := fmt.Sprintf("%s answers: %s counted (%s)", cfg.ResultURL, count(res.Total, "vote"), strings.Join(counts, ", "))
	if cfg.ResultAdminURL != "" {
		msg += "; ready"
	}
	return okHop(HopResult, cfg.ResultURL, msg)
}

// failing explains a 5xx answer of a service's public URL.
func failing(what, base, path string, a *answer) *problem {
	return &problem{CauseOther, fmt.Sprintf("%s%s answered %d %s: %s (or a proxy in front of it) fails; look at its logs, and at the Ingress or Gateway if one is in between",
		base, path, a.status, statusText(a), what)}
}

// readyzIfGiven is readyz when the admin URL is given, nil otherwise.
func readyzIfGiven(ctx context.Context, cfg Config, what, adminURL, flag string) *problem {
	if adminURL == "" {
		return nil
	}
	return readyz(ctx, cfg, what, adminURL, flag)
}

// wrongService explains an answer that is not the service's: something else listens there.
func wrongService(what, base, path string, a *answer, flag, port string) *problem {
	return &problem{CauseWrongServer, fmt.Sprintf("%s%s answered %d %s, not %s's JSON: something else answers at that URL (another service, or a proxy's page); point %s at %s (port %s by default)",
		base, path, a.status, statusText(a), what, flag, what, port)}
}

func statusText(a *answer) string {
	t := http.StatusText(a.status)
	if b := strings.TrimSpace(string(a.body)); b != "" && len(b) < 200 && !strings.Contains(b, "<") {
		t += " (" + b + ")"
	}
	return t
}

func isJSON(b []byte) bool { return json.Valid(b) }

// readyz reads a service's /readyz and explains why it is not ready, naming the failing
// dependencies as the service reports them.
func readyz(ctx context.Context, cfg Config, what, adminURL, flag string) *problem {
	s := httpService(what+"'s admin port", adminURL, flag)
	a, p := get(ctx, cfg, s, adminURL, "/readyz")
	if p != nil {
		return p
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if json.Unmarshal(a.body, &body) != nil || body.Status == "" {
		return &problem{CauseWrongServer, fmt.Sprintf("%s/readyz answered %d %s, not a readiness report: %s is not the admin port (--admin-addr, 9090 by default)",
			adminURL, a.status, statusText(a), flag)}
	}
	if a.status == http.StatusOK {
		return nil
	}
	switch body.Status {
	case "stopping":
		return &problem{CauseNotReady, fmt.Sprintf("%s answers but is not ready: its /readyz says it is stopping (SIGTERM received); wait for its replacement, or find what stops it", what)}
	case "starting":
		return &problem{CauseNotReady, fmt.Sprintf("%s answers but is not ready: its /readyz says it is starting (its first checks have not finished); run doctor again in a few seconds", what)}
	}
	var failing []string
	for _, name := range slices.Sorted(maps.Keys(body.Checks)) {
		if v := body.Checks[name]; v != "ok" {
			failing = append(failing, name+": "+shorten(v, 300))
		}
	}
	return &problem{CauseNotReady, fmt.Sprintf("%s answers but is not ready: its /readyz says %s; fix that dependency (its own line says more when doctor is given its URL)",
		what, strings.Join(failing, "; "))}
}

// shorten cuts s to at most n bytes, at a rune boundary.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
