// Package fault holds the faults a drill switches on, so that a platform team can watch its
// dashboards, alerts, retries and rollbacks react: off by default, set by flags at start and
// by the admin port at run time (never the public ports). Each active fault is a metric
// (voting_fault_active), a log line when it changes, and a notice on the page of the service
// it affects, so that nobody mistakes a drill for a bug.
//
// A fault never loses an accepted vote: vote's injected errors answer before the vote is
// queued (so it was never accepted), and the worker's faults only delay or stop the
// recording of votes that stay in the queue until recorded.
package fault

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is what a fault's value is.
type Kind int

const (
	// Ratio is a share of requests, from 0 to 1.
	Ratio Kind = iota
	// Duration is a time added, 0 or more.
	Duration
	// Switch is on or off.
	Switch
	// Count is a number of votes, 0 (off) or more.
	Count
)

// Def defines a fault: its name (the flag is --fault-<name>, the admin port's key <name>),
// its kind, what it does (the flag's help) and how the page says it is on (Notice gets the
// value as it is printed).
type Def struct {
	Name   string
	Kind   Kind
	Help   string
	Notice func(value string) string
}

// Set is the faults of one process. It is safe for concurrent use.
type Set struct {
	defs   []Def
	log    *slog.Logger
	active *prometheus.GaugeVec

	mu     sync.RWMutex
	values map[string]float64 // ratio, seconds, 0/1 or count; 0 is off
}

// NewSet returns a process's set, with no fault yet (Add adds the services'), and registers
// its metric on reg.
func NewSet(log *slog.Logger, reg prometheus.Registerer) *Set {
	s := &Set{log: log, values: map[string]float64{},
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "voting_fault_active",
			Help: "A fault switched on for a drill, by name: its value (a share, seconds, 1 for a switch, a count of votes); 0 when off.",
		}, []string{"fault"})}
	reg.MustRegister(s.active)
	return s
}

// Add adds a service's faults, off unless flags sets them.
func (s *Set) Add(flags Flags, defs ...Def) error {
	s.mu.Lock()
	s.defs = append(s.defs, defs...)
	s.mu.Unlock()
	var errs []error
	for _, d := range defs {
		s.active.WithLabelValues(d.Name).Set(0)
		if v, ok := flags[d.Name]; ok {
			errs = append(errs, s.Set(d.Name, v))
		}
	}
	return errors.Join(errs...)
}

// value returns the value of the fault name, 0 when off or unknown.
func (s *Set) value(name string) float64 {
	if s == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.values[name]
}

// Ratio returns the share of the Ratio fault name.
func (s *Set) Ratio(name string) float64 { return s.value(name) }

// Duration returns the time of the Duration fault name.
func (s *Set) Duration(name string) time.Duration {
	return time.Duration(s.value(name) * float64(time.Second))
}

// On reports whether the Switch fault name is on.
func (s *Set) On(name string) bool { return s.value(name) != 0 }

// Count returns the number of the Count fault name.
func (s *Set) Count(name string) int64 { return int64(s.value(name)) }

func (s *Set) def(name string) (Def, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range s.defs {
		if d.Name == name {
			return d, true
		}
	}
	return Def{}, false
}

// parse reads a value of kind k as its number.
func parse(k Kind, v string) (float64, error) {
	switch k {
	case Ratio:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
			return 0, fmt.Errorf("%q is not a share from 0 to 1", v)
		}
		return f, nil
	case Duration:
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Hour {
			return 0, fmt.Errorf("%q is not a duration from 0 to 1h (e.g. 250ms)", v)
		}
		return d.Seconds(), nil
	case Switch:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, fmt.Errorf("%q is not true or false", v)
		}
		if b {
			return 1, nil
		}
		return 0, nil
	default:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a count of 0 or more", v)
		}
		return float64(n), nil
	}
}

// format prints the value of kind k as it is set.
func format(k Kind, f float64) string {
	switch k {
	case Duration:
		return time.Duration(f * float64(time.Second)).String()
	case Switch:
		return strconv.FormatBool(f != 0)
	default:
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
}

// Set sets the fault name to value (as its kind reads it), says so in the log when it
// changes, and updates the metric.
func (s *Set) Set(name, value string) error {
	d, ok := s.def(name)
	if !ok {
		return fmt.Errorf("no fault %q here (this process has: %s)", name, s.names())
	}
	f, err := parse(d.Kind, value)
	if err != nil {
		return fmt.Errorf("fault %s: %w", name, err)
	}
	s.mu.Lock()
	old := s.values[name]
	s.values[name] = f
	s.mu.Unlock()
	s.active.WithLabelValues(name).Set(f)
	if old != f {
		level := slog.LevelWarn // a drill must stand out in the log
		if f == 0 {
			level = slog.LevelInfo
		}
		s.log.Log(context.Background(), level, "fault changed", "fault", name, "from", format(d.Kind, old), "to", format(d.Kind, f))
	}
	return nil
}

func (s *Set) names() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ns []string
	for _, d := range s.defs {
		ns = append(ns, d.Name)
	}
	sort.Strings(ns)
	return fmt.Sprint(ns)
}

// Notices returns, for the page, a sentence for each fault that is on, in the order of the
// definitions.
func (s *Set) Notices() []string {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, d := range s.defs {
		if f := s.values[d.Name]; f != 0 {
			out = append(out, d.Notice(format(d.Kind, f)))
		}
	}
	return out
}

// Flags are the faults set on the command line (or in the environment), checked as they are
// parsed and applied to the process's Set once it exists.
type Flags map[string]string

// Register adds a --fault-<name> flag for each of defs.
func (f Flags) Register(fs *flag.FlagSet, defs ...Def) {
	for _, d := range defs {
		fs.Func("fault-"+d.Name, d.Help+" (a drill: off by default; also set at run time by a POST to the admin port's /faults)", func(v string) error {
			if _, err := parse(d.Kind, v); err != nil {
				return err
			}
			f[d.Name] = v
			return nil
		})
	}
}

// Handler serves the admin port's /faults: GET lists every fault and its value as JSON;
// POST sets the ones named in the form (name=value, several at once), all or none.
func (s *Set) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			// Check every value first, so that a mistake changes nothing.
			var errs []error
			for name, vs := range r.PostForm {
				if d, ok := s.def(name); !ok {
					errs = append(errs, fmt.Errorf("no fault %q here (this process has: %s)", name, s.names()))
				} else if _, err := parse(d.Kind, vs[len(vs)-1]); err != nil {
					errs = append(errs, fmt.Errorf("fault %s: %w", name, err))
				}
			}
			if err := errors.Join(errs...); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			for name, vs := range r.PostForm {
				_ = s.Set(name, vs[len(vs)-1])
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "GET lists the faults, POST name=value sets them", http.StatusMethodNotAllowed)
			return
		}
		all := map[string]string{}
		s.mu.RLock()
		for _, d := range s.defs {
			all[d.Name] = format(d.Kind, s.values[d.Name])
		}
		s.mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(all)
	})
}
