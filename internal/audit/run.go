package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/votingapp/voting/internal/voting"
)

// Store reads stored votes: what the audit checks vote by vote. pgstore.Store and
// sqlitestore.Store (OpenReadOnly) have it.
type Store interface {
	VotesOf(ctx context.Context, voterIDs []string) (map[string]voting.Vote, error)
}

// Config says where to look and how long to wait.
type Config struct {
	// ResultURL is the result service, e.g. http://localhost:8081; "" when not read.
	ResultURL string
	// Client reads ResultURL (NewClient); nil: one without a connect-to.
	Client *http.Client
	// Store, when set, is read vote by vote; StoreName names it in the outcome.
	Store     Store
	StoreName string
	// OthersVote: other clients may vote during the run, so the totals prove nothing.
	OthersVote bool
	// Timeout bounds the wait for the counts to settle: the worker records votes after the
	// vote service answered, so a verdict right after the last vote would see votes still
	// queued as lost. 0 reads once.
	Timeout time.Duration
	// Interval is the pause between reads, Quiet how long the counts must stay the same
	// before a clean verdict is final (0: 250 ms and 1 s).
	Interval, Quiet time.Duration
}

// Run reads what the deployment shows until the run's votes are all counted and nothing
// changed for Config.Quiet, or until Config.Timeout, and returns the last verdict. It
// fails only when it cannot read the deployment at all, or its last read failed.
func Run(ctx context.Context, told *Told, cfg Config) (*Outcome, error) {
	if cfg.ResultURL == "" && cfg.Store == nil {
		return nil, errors.New("audit: nothing to read: want a result URL or a store")
	}
	if cfg.Client == nil {
		cfg.Client = NewClient("")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = time.Second
	}
	ids := told.Voters()
	start := time.Now()
	deadline := start.Add(cfg.Timeout)
	var (
		last        *Outcome
		lastKey     string
		stableSince time.Time
	)
	for {
		o, err := observe(ctx, told, ids, cfg)
		now := time.Now()
		if err == nil {
			if k := o.key(); last == nil || k != lastKey {
				lastKey, stableSince = k, now
			}
			last = o
			o.Settled = now.Sub(stableSince) >= cfg.Quiet
			if o.OK && o.Settled {
				break
			}
		}
		if !now.Before(deadline) || ctx.Err() != nil {
			if err != nil {
				return nil, err // the last read failed: an older verdict may be stale
			}
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Interval):
		}
	}
	last.Waited = time.Since(start)
	if !last.Settled {
		if cfg.Timeout <= 0 {
			last.Notes = append(last.Notes, "read once (--verify-timeout 0): votes still queued would show as lost")
		} else {
			last.Notes = append(last.Notes, fmt.Sprintf("not settled: the counts were still changing after %s (--verify-timeout); the queue may not have drained", last.Waited.Round(time.Millisecond)))
		}
	}
	return last, nil
}

// observe reads the deployment once and judges it.
func observe(ctx context.Context, told *Told, ids []string, cfg Config) (*Outcome, error) {
	var stored map[string]voting.Vote
	var results *voting.Result
	var err error
	if cfg.Store != nil {
		if stored, err = cfg.Store.VotesOf(ctx, ids); err != nil {
			return nil, fmt.Errorf("read the store: %w", err)
		}
	}
	if cfg.ResultURL != "" {
		if results, err = Results(ctx, cfg.Client, cfg.ResultURL); err != nil {
			return nil, err
		}
	}
	return Compare(told, results, stored, Options{Store: cfg.StoreName, OthersVote: cfg.OthersVote}), nil
}

// key sums up what a read saw, to tell whether the next one saw something else.
func (o *Outcome) key() string {
	k := fmt.Sprint(o.Counted, o.Lost, o.Extra, o.UnknownCounted)
	if o.Results != nil {
		k += fmt.Sprint(" ", o.Results.Total, o.Results.Expected)
	}
	return k
}

// Results reads GET <resultURL>/api/results.
func Results(ctx context.Context, client *http.Client, resultURL string) (*voting.Result, error) {
	u := strings.TrimRight(resultURL, "/") + "/api/results"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read /api/results: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var r voting.Result
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &r, nil
}

// NewClient returns a client for the result service that connects to connectTo (host:port)
// when set, whatever the URL's host, which still goes in the Host header: how a Gateway is
// reached by its address (loadgen's --connect-to).
func NewClient(connectTo string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if connectTo != "" {
					addr = connectTo
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		},
	}
}
