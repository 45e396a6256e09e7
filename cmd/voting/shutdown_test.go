package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// logLines returns the messages of the app's log lines, in order, each with its whole line.
func logLines(t *testing.T, a *testApp) (msgs, lines []string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(a.logs.String()), "\n") {
		var l struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msgs, lines = append(msgs, l.Msg), append(lines, line)
	}
	return msgs, lines
}

// TestStopSaysWhatItWaitsFor: a step of stopping that takes long is named in the log while
// the process waits for it, and "stopped" is the last line, after every wait. Here the step
// is the flush of a span to a collector that takes connections and never answers: the
// process waits the flush's 5 s for it.
func TestStopSaysWhatItWaitsFor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept, read, never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + ln.Addr().String()}
	app := startApp(t, env, []string{"vote", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
	app.waitReady()
	// A vote's spans wait in the batcher (it sends every 5 s): stopping must flush them.
	resp, err := http.Post(app.url("vote")+"/api/vote", "application/json", strings.NewReader(`{"vote":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	if code := app.stop(); code != 0 {
		t.Fatalf("exit %d; logs:\n%s", code, app.logs)
	}
	took := time.Since(start)
	msgs, lines := logLines(t, app)
	waiting := -1
	for i, line := range lines {
		if msgs[i] == "stopping: waiting" && strings.Contains(line, "trace exporter") {
			waiting = i
		}
	}
	if waiting < 0 {
		t.Fatalf("no line says the process waits for the trace exporter (stopping took %v); logs:\n%s", took, app.logs)
	}
	if last := msgs[len(msgs)-1]; last != "stopped" {
		t.Errorf("last log line %q, want \"stopped\" after every wait; logs:\n%s", last, app.logs)
	}
	// Loose: the flush gives up after 5 s; stopping must not take much more.
	if took > 20*time.Second {
		t.Errorf("stopping took %v; the flush is bounded at 5 s", took)
	}
}

// TestIdleStopIsQuick: an idle process stops well within a second or two; the bound here is
// loose (10 s), against a stop that waits for something it should not.
func TestIdleStopIsQuick(t *testing.T) {
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
	app.waitReady()
	start := time.Now()
	if code := app.stop(); code != 0 {
		t.Fatalf("exit %d; logs:\n%s", code, app.logs)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("an idle process took %v to stop; logs:\n%s", took, app.logs)
	}
	if msgs, _ := logLines(t, app); msgs[len(msgs)-1] != "stopped" {
		t.Errorf("last log line %q, want \"stopped\"; logs:\n%s", msgs[len(msgs)-1], app.logs)
	}
}
