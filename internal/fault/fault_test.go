package fault

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gauge reads the value of voting_fault_active for the fault name.
func gauge(t *testing.T, s *Set, name string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.active.WithLabelValues(name).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

var testDefs = []Def{
	{Name: "error-ratio", Kind: Ratio, Help: "errors", Notice: func(v string) string { return "errors " + v }},
	{Name: "latency", Kind: Duration, Help: "slow", Notice: func(v string) string { return "slow " + v }},
	{Name: "stall", Kind: Switch, Help: "stall", Notice: func(string) string { return "stalled" }},
	{Name: "exit-after", Kind: Count, Help: "exit", Notice: func(v string) string { return "exit after " + v }},
}

func newTestSet(t *testing.T, flags Flags) (*Set, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	s := NewSet(slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err := s.Add(flags, testDefs...); err != nil {
		t.Fatal(err)
	}
	return s, reg, &logs
}

func TestOffByDefault(t *testing.T) {
	s, reg, logs := newTestSet(t, nil)
	if s.Ratio("error-ratio") != 0 || s.Duration("latency") != 0 || s.On("stall") || s.Count("exit-after") != 0 || s.Notices() != nil {
		t.Fatal("a fault is on by default")
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "voting_fault_active" || len(mfs[0].GetMetric()) != 4 {
		t.Fatalf("gathered %v, %v; want voting_fault_active with one series per fault, at 0", mfs, err)
	}
	if logs.Len() != 0 {
		t.Errorf("logged with nothing changed: %s", logs)
	}
	var nilSet *Set // a service without faults
	if nilSet.Ratio("error-ratio") != 0 || nilSet.Notices() != nil {
		t.Fatal("a nil set has a fault on")
	}
}

func TestFlags(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := Flags{}
	f.Register(fs, testDefs...)
	if err := fs.Parse([]string{"--fault-error-ratio=1.5"}); err == nil || !strings.Contains(err.Error(), "not a share from 0 to 1") {
		t.Fatalf("--fault-error-ratio=1.5: %v, want a share from 0 to 1", err)
	}
	if err := fs.Parse([]string{"--fault-error-ratio=0.25", "--fault-latency=150ms"}); err != nil {
		t.Fatal(err)
	}
	s, _, logs := newTestSet(t, f)
	if s.Ratio("error-ratio") != 0.25 || s.Duration("latency") != 150*time.Millisecond {
		t.Fatalf("after the flags: ratio %v, latency %v", s.Ratio("error-ratio"), s.Duration("latency"))
	}
	if got := gauge(t, s, "error-ratio"); got != 0.25 {
		t.Errorf("voting_fault_active{fault=error-ratio} = %v, want 0.25", got)
	}
	if !strings.Contains(logs.String(), `msg="fault changed" fault=error-ratio from=0 to=0.25`) {
		t.Errorf("no log line for the fault switched on:\n%s", logs)
	}
	if got := strings.Join(s.Notices(), "; "); got != "errors 0.25; slow 150ms" {
		t.Errorf("notices %q", got)
	}
}

// TestAdmin: GET lists the faults; POST sets them, all or none; a bad value changes nothing.
func TestAdmin(t *testing.T) {
	s, _, logs := newTestSet(t, nil)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	post := func(form url.Values) (int, string) {
		resp, err := http.PostForm(srv.URL, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post(url.Values{"stall": {"true"}, "exit-after": {"100"}})
	if code != 200 || !strings.Contains(body, `"stall":"true"`) || !strings.Contains(body, `"exit-after":"100"`) || !s.On("stall") || s.Count("exit-after") != 100 {
		t.Fatalf("POST stall=true exit-after=100: %d %s", code, body)
	}
	code, body = post(url.Values{"stall": {"false"}, "latency": {"forever"}})
	if code != 400 || !strings.Contains(body, "not a duration") || !s.On("stall") {
		t.Fatalf("POST with a bad value: %d %s; want 400 and nothing changed", code, body)
	}
	code, body = post(url.Values{"no-such": {"1"}})
	if code != 400 || !strings.Contains(body, `no fault "no-such" here`) {
		t.Fatalf("POST of an unknown fault: %d %s", code, body)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"error-ratio":"0","exit-after":"100","latency":"0s","stall":"true"}`; strings.TrimSpace(string(b)) != want {
		t.Errorf("GET /faults = %s, want %s", b, want)
	}
	if !strings.Contains(logs.String(), "fault=stall from=false to=true") {
		t.Errorf("no log line for stall:\n%s", logs)
	}
}
