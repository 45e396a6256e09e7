// Package loadgen casts votes against a vote service over HTTP, as browsers and the
// original app's seed (`ab -p posta`) do, and reports what it was told: how many votes were
// accepted, per option, and how fast. It talks only to the URL it is given.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Weight is an option and its share of the votes.
type Weight struct {
	Option string
	Weight int
}

// ParseWeights parses "a=2,b=1".
func ParseWeights(s string) ([]Weight, error) {
	var ws []Weight
	for _, part := range strings.Split(s, ",") {
		id, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		var w int
		if _, err := fmt.Sscan(n, &w); !ok || err != nil || w <= 0 || id == "" {
			return nil, fmt.Errorf("weights %q: want option=weight,... with positive weights", s)
		}
		ws = append(ws, Weight{Option: id, Weight: w})
	}
	return ws, nil
}

// Config says what load to make.
type Config struct {
	URL         string // the vote service, e.g. http://localhost:8080
	Votes       int    // how many votes to cast
	Concurrency int    // requests in flight at once
	// Weights decide the options. The sequence is deterministic (smooth weighted round
	// robin), so 3000 votes at a=2,b=1 are exactly 2000 a and 1000 b, as in the seed.
	Weights []Weight
	// Reuse is the share of votes cast by a voter who voted before (0: every vote is a new
	// voter, as with ab; 0.5: half the votes change an earlier voter's choice).
	Reuse float64
	// Rate is the votes per second, on a schedule (vote i is sent at i/Rate, or as soon as a
	// request slot is free after that); 0 means as fast as the service answers.
	Rate float64
	// JSON sends POST /api/vote with JSON instead of the form POST to /.
	JSON bool
	// Raw uses a minimal HTTP/1.1 client (plain http only) that costs a fraction of
	// net/http's CPU per vote, so that a generator on the machine under test takes less of
	// the CPU it measures.
	Raw bool
	// Timeout bounds one request.
	Timeout time.Duration
	// Retry, when positive, sends a vote again after a 5xx answer or a failed request, for
	// up to this long with a growing pause, as a person pressing the button again would:
	// same voter (when the service told it), same choice.
	Retry time.Duration
	// SerialVoters picks a returning voter only when none of its votes is in flight, so the
	// service sees each voter's votes in the order they were started and Final is exact.
	// Without it two votes of one voter may race and either may be the newer.
	SerialVoters bool

	// WSURL, with WSClients > 0, is the result service (e.g. http://localhost:8081): Run
	// holds WSClients WebSocket clients open on its /ws while voting and measures vote →
	// push latency (Report.Push). Every vote must then be a new voter (Reuse 0), and nothing
	// else may vote during the run, since the latency is read from the totals.
	WSURL     string
	WSClients int
	// WSWait is how long to wait after the last vote for every client to see the final
	// total (default 10s).
	WSWait time.Duration

	// ConnectTo, when set, is the host:port every connection goes to, whatever the URLs
	// name, which still give the Host header: how a Gateway or Ingress is reached by its
	// address while the request carries the hostname its routes match (curl's --connect-to).
	ConnectTo string
}

// dial returns the address to connect to for addr: ConnectTo when set.
func (cfg Config) dial(addr string) string {
	if cfg.ConnectTo != "" {
		return cfg.ConnectTo
	}
	return addr
}

// Report is what the run was told by the service.
type Report struct {
	Sent     int            `json:"sent"`
	Accepted int            `json:"accepted"`
	Failed   int            `json:"failed"`
	ByStatus map[string]int `json:"by_status"`
	// AcceptedByOption counts the 2xx answers per option. With Reuse > 0 a voter's later
	// vote replaces the earlier one, so compare the store with Final instead.
	AcceptedByOption map[string]int `json:"accepted_by_option"`
	// Final is each voter's last accepted vote: what the store must hold once the queue
	// has drained, when only this run voted. Voters are named by their id in the store
	// (see voterID), not by their cookie, which changes with each vote.
	Final       map[string]string `json:"-"`
	FinalCounts map[string]int    `json:"final_counts"`
	Duration    time.Duration     `json:"duration_ns"`
	Rate        float64           `json:"votes_per_second"`
	P50         time.Duration     `json:"p50_ns"`
	P95         time.Duration     `json:"p95_ns"`
	P99         time.Duration     `json:"p99_ns"`
	Max         time.Duration     `json:"max_ns"`
	FirstError  string            `json:"first_error,omitempty"`
	// Retried counts requests sent again under Config.Retry.
	Retried int `json:"retried"`
	// Unsure holds, per voter, the options of votes sent after its last accepted one whose
	// outcome is unknown: a 5xx or a broken connection may still have queued the vote (the
	// answer, not the vote, was lost). The store may hold one of them instead of Final.
	// A refused connection is not unsure: nothing reached the service.
	Unsure map[string][]string `json:"-"`
	// UnsureNew counts such votes of new voters, whose ids the service never told, and the
	// voters it told an id (in a 5xx answer) but never accepted a vote of: each may have
	// become a voter that Final does not know.
	UnsureNew int `json:"unsure_new"`
	// Refused holds, per voter, the options of votes answered 4xx (refused: never queued)
	// after its last accepted one, for the voters the service told an id. A stored vote
	// for a voter that has only refusals is one that should not be there.
	Refused map[string][]string `json:"-"`
	// Push is what the WebSocket clients saw, when Config.WSClients > 0.
	Push *PushReport `json:"push,omitempty"`
}

// Run casts the votes and returns the report. It stops early when ctx is done.
func Run(ctx context.Context, cfg Config, progress func(done int)) (*Report, error) {
	if cfg.Votes <= 0 || cfg.Concurrency <= 0 || len(cfg.Weights) == 0 {
		return nil, errors.New("loadgen: want votes > 0, concurrency > 0 and weights")
	}
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("loadgen: bad URL %q", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.WSWait <= 0 {
		cfg.WSWait = 10 * time.Second
	}
	var watch *watchers
	var baseTotal int64
	if cfg.WSClients > 0 {
		if cfg.Reuse > 0 {
			return nil, errors.New("loadgen: vote → push latency needs every vote from a new voter (reuse 0)")
		}
		watch, err = dialWatchers(ctx, cfg.WSURL, cfg.WSClients, max(cfg.Timeout, 30*time.Second), cfg.dial)
		if err != nil {
			return nil, err
		}
		defer watch.close()
	}
	client := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency,
			IdleConnTimeout: 30 * time.Second,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, cfg.dial(addr))
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	plan := planOptions(cfg.Weights, cfg.Votes)
	var (
		next      atomic.Int64
		mu        sync.Mutex
		voters    []string              // voters seen so far, for reuse
		cookies   = map[string]string{} // voter -> its latest voter_id cookie, sent with its next vote
		lat       = make([]time.Duration, 0, cfg.Votes)
		rep       = &Report{ByStatus: map[string]int{}, AcceptedByOption: map[string]int{}, Final: map[string]string{}, FinalCounts: map[string]int{}}
		lastVoted = map[string]int{}  // voter -> index of its last accepted vote, for Final
		busy      = map[string]bool{} // voters with a vote in flight, for SerialVoters
		unsure    = map[string][]unsureVote{}
		refused   = map[string][]unsureVote{}
		acks      []time.Time // when each 2xx came, in order, for the push latency
	)
	// markUnsure notes vote i, which failed retryably, as one that may have been recorded
	// anyway; a refused connection reached nothing. mu must be held.
	markUnsure := func(voter string, i int, option string, err error) {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
		case voter == "":
			rep.UnsureNew++
		default:
			unsure[voter] = append(unsure[voter], unsureVote{i, option})
		}
	}
	if watch != nil {
		baseTotal = watch.start()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
		do := func(voter, option string) (int, string, error) {
			return cast(ctx, client, base, cfg.JSON, voter, option)
		}
		if cfg.Raw {
			raw, err := newRawClient(base, cfg.JSON, cfg.Timeout, cfg.dial)
			if err != nil {
				return nil, err
			}
			defer raw.close()
			do = func(voter, option string) (int, string, error) { return raw.cast(voter, option) }
		}
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Votes || ctx.Err() != nil {
					return
				}
				if cfg.Rate > 0 {
					// Vote i is due at start + i/Rate. A schedule, not a ticker: a ticker
					// drops the ticks a busy machine misses, and the rate falls short; this
					// catches up, so the run's average is the rate asked for.
					due := start.Add(time.Duration(float64(i) * float64(time.Second) / cfg.Rate))
					if wait := time.Until(due); wait > 0 {
						t := time.NewTimer(wait)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
							return
						}
					}
				}
				voter := ""
				if cfg.Reuse > 0 && rng.Float64() < cfg.Reuse {
					mu.Lock()
					// A few tries to find a voter with nothing in flight; else a new voter.
					for try := 0; try < 8 && len(voters) > 0; try++ {
						if v := voters[rng.IntN(len(voters))]; !cfg.SerialVoters || !busy[v] {
							voter = v
							break
						}
					}
					if cfg.SerialVoters && voter != "" {
						busy[voter] = true
					}
					mu.Unlock()
				}
				option := plan[i]
				t0 := time.Now()
				// As a browser does: send the voter's latest cookie, and keep the one each
				// answer gives, a 5xx's included (a new voter's retry is then the same
				// voter). The cookie carries the voter's last vote time, which orders its
				// next vote after it whichever vote replica takes it.
				adopt := func(cookie string) {
					if cookie == "" {
						return
					}
					if voter == "" {
						voter = voterID(cookie)
					}
					cookies[voter] = cookie
				}
				mu.Lock()
				cookie := cookies[voter]
				mu.Unlock()
				status, got, err := do(cookie, option)
				mu.Lock()
				adopt(got)
				cookie = cookies[voter]
				mu.Unlock()
				for pause := 50 * time.Millisecond; cfg.Retry > 0 && retryable(status, err) && time.Since(t0) < cfg.Retry && ctx.Err() == nil; pause = min(2*pause, time.Second) {
					mu.Lock()
					rep.Retried++
					if rep.FirstError == "" && err != nil {
						rep.FirstError = err.Error() // even though the retry may succeed
					}
					markUnsure(voter, i, option, err)
					mu.Unlock()
					select {
					case <-time.After(pause):
					case <-ctx.Done():
					}
					status, got, err = do(cookie, option)
					mu.Lock()
					adopt(got)
					cookie = cookies[voter]
					mu.Unlock()
				}
				d := time.Since(t0)
				mu.Lock()
				delete(busy, voter)
				rep.Sent++
				lat = append(lat, d)
				key := fmt.Sprint(status)
				if err != nil {
					key = "error"
					if rep.FirstError == "" {
						rep.FirstError = err.Error()
					}
				}
				rep.ByStatus[key]++
				if err == nil && status >= 200 && status < 300 {
					if watch != nil {
						acks = append(acks, t0.Add(d))
					}
					rep.Accepted++
					rep.AcceptedByOption[option]++
					if _, ok := lastVoted[voter]; !ok {
						voters = append(voters, voter)
					}
					// Votes of one voter may finish out of order; the later-started one
					// is the newer vote.
					if prev, ok := lastVoted[voter]; !ok || i > prev {
						lastVoted[voter] = i
						rep.Final[voter] = option
						unsure[voter] = slices.DeleteFunc(unsure[voter], func(u unsureVote) bool { return u.i <= i })
						refused[voter] = slices.DeleteFunc(refused[voter], func(u unsureVote) bool { return u.i <= i })
					}
				} else {
					rep.Failed++
					if retryable(status, err) {
						markUnsure(voter, i, option, err)
					} else if voter != "" {
						refused[voter] = append(refused[voter], unsureVote{i, option})
					}
				}
				done := rep.Sent
				mu.Unlock()
				if progress != nil {
					progress(done)
				}
			}
		})
	}
	wg.Wait()
	rep.Duration = time.Since(start)
	if rep.Duration > 0 {
		rep.Rate = float64(rep.Accepted) / rep.Duration.Seconds()
	}
	for _, o := range rep.Final {
		rep.FinalCounts[o]++
	}
	rep.Unsure = map[string][]string{}
	for v, us := range unsure {
		for _, u := range us {
			rep.Unsure[v] = append(rep.Unsure[v], u.option)
		}
		if _, ok := rep.Final[v]; !ok && len(us) > 0 {
			rep.UnsureNew++ // told its id, never accepted: Final does not know it
		}
	}
	rep.Refused = map[string][]string{}
	for v, rs := range refused {
		for _, r := range rs {
			rep.Refused[v] = append(rep.Refused[v], r.option)
		}
	}
	slices.Sort(lat)
	rep.P50, rep.P95, rep.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	if len(lat) > 0 {
		rep.Max = lat[len(lat)-1]
	}
	if watch != nil {
		slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
		final := baseTotal + int64(rep.Accepted)
		watch.waitFinal(ctx, final, cfg.WSWait)
		watch.close()
		rep.Push = watch.report(baseTotal, final, acks)
	}
	return rep, ctx.Err()
}

// unsureVote is a vote (by its index in the run) whose outcome is unknown, or that was
// refused.
type unsureVote struct {
	i      int
	option string
}

// retryable reports whether a vote's outcome calls for sending it again: the service was
// unavailable or could not be reached. A 4xx is the service's answer to the vote itself.
func retryable(status int, err error) bool { return err != nil || status >= 500 }

// voterID is the voter id, the store's key, of a voter_id cookie: what comes before the
// first dot (the cookie is "<id>.<last vote time>.<signature>"; a cookie without a dot is
// the id itself).
func voterID(cookie string) string {
	id, _, _ := strings.Cut(cookie, ".")
	return id
}

// cast sends one vote with the voter_id cookie given (a new voter when "") and returns the
// status and the cookie the service gave, or the one sent when it gave none.
func cast(ctx context.Context, client *http.Client, base *url.URL, asJSON bool, voter, option string) (int, string, error) {
	var req *http.Request
	var err error
	if asJSON {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base.String()+"/api/vote", strings.NewReader(`{"vote":"`+option+`"}`))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base.String()+"/", strings.NewReader("vote="+url.QueryEscape(option)))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if err != nil {
		return 0, "", err
	}
	if voter != "" {
		req.AddCookie(&http.Cookie{Name: "voter_id", Value: voter})
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	resp.Body.Close()
	got := voter
	for _, c := range resp.Cookies() {
		if c.Name == "voter_id" {
			got = c.Value
		}
	}
	return resp.StatusCode, got, nil
}

// planOptions returns the option of each vote by smooth weighted round robin: exact shares,
// evenly interleaved.
func planOptions(ws []Weight, n int) []string {
	total := 0
	for _, w := range ws {
		total += w.Weight
	}
	current := make([]int, len(ws))
	plan := make([]string, n)
	for i := range plan {
		best := 0
		for j, w := range ws {
			current[j] += w.Weight
			if current[j] > current[best] {
				best = j
			}
		}
		current[best] -= total
		plan[i] = ws[best].Option
	}
	return plan
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}
