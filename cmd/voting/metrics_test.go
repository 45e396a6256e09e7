package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// votingSeries counts the series of the voting_ metrics in a /metrics answer (a histogram's
// buckets, sum and count are lines of one series; the count of lines moves with the series).
func votingSeries(t *testing.T, a *testApp) int {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(get(t, a.url("admin")+"/metrics")))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "voting_") {
			n++
		}
	}
	return n
}

// TestClientsCannotGrowTheSeries: whatever a client sends to the public ports (invented
// methods, paths, votes, origins, WebSocket handshakes), the labels of every metric stay in
// their fixed sets: after one request of each kind, 1,000 more of each add no series.
func TestClientsCannotGrowTheSeries(t *testing.T) {
	app := startApp(t, nil, []string{"vote", "result", "admin"}, append([]string{"all", "--data-dir=" + t.TempDir()}, loopback...)...)
	app.waitReady()
	vote, result := app.url("vote"), app.url("result")
	do := func(method, url, body string, header ...string) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
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
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %d", method, url, resp.StatusCode)
		}
	}
	kinds := func(i int) {
		for _, base := range []string{vote, result} {
			do(fmt.Sprintf("INVENTED%d", i), base+"/", "")
			do("GET", fmt.Sprintf("%s/no/such/%d?q=%d", base, i, i), "")
		}
		form := "application/x-www-form-urlencoded"
		do("POST", vote+"/", fmt.Sprintf("vote=option%d", i), "Content-Type", form)
		do("POST", vote+"/api/vote", fmt.Sprintf(`{"vote":"option%d"}`, i), "Content-Type", "application/json")
		do("POST", vote+"/", "vote=a", "Content-Type", form, "Origin", fmt.Sprintf("https://site%d.example", i))
		do("GET", result+"/ws", "", "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", fmt.Sprint(i))
		do("GET", result+"/ws", "", "Origin", fmt.Sprintf("https://site%d.example", i))
	}
	kinds(-1)
	before := votingSeries(t, app)
	for i := range 1000 {
		kinds(i)
	}
	if after := votingSeries(t, app); after != before {
		t.Errorf("voting_ series: %d after one request of each kind, %d after 1,000 more of each; want no new series", before, after)
	}
}
