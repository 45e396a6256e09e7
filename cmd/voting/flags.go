package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/votingapp/voting/internal/ratelimit"
	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// errUsage marks a command line that could not be parsed; the flag package has already said
// why.
var errUsage = errors.New("usage")

// secretFlags may also be read from a file named by VOTING_<NAME>_FILE (Docker and
// Kubernetes secrets are files). They are masked when the configuration is logged.
var secretFlags = map[string]bool{"redis-url": true, "postgres-url": true}

// envName is the environment variable of a flag: VOTING_ and the name in upper snake case.
func envName(flagName string) string {
	return "VOTING_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet returns a flag set for a subcommand whose usage lists each flag's variable.
func newFlagSet(name string, env *cmdEnv, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("voting "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: voting %s [flags]\n\n%s\n\nFlags (each also settable by the environment variable shown):\n", name, summary)
		fs.VisitAll(func(f *flag.Flag) {
			typ, help := flag.UnquoteUsage(f)
			fmt.Fprintf(env.stderr, "  --%s %s\n    \t%s [$%s", f.Name, typ, help, envName(f.Name))
			if secretFlags[f.Name] {
				fmt.Fprintf(env.stderr, ", or a file named by $%s_FILE", envName(f.Name))
			}
			fmt.Fprint(env.stderr, "]")
			switch {
			case f.DefValue == "" || f.DefValue == "0" || f.DefValue == "false":
			case typ == "string" || typ == "list":
				fmt.Fprintf(env.stderr, " (default %q)", f.DefValue)
			default:
				fmt.Fprintf(env.stderr, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(env.stderr)
		})
	}
	return fs
}

// parse parses the command line, then fills each flag not given on it from its environment
// variable (or, for secrets, the file named by the _FILE variable). The command line wins
// over the environment, which wins over the default. nargs is how many arguments the
// command takes after its flags (healthcheck its URL, the others none).
func parse(fs *flag.FlagSet, args []string, env *cmdEnv, nargs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	switch {
	case fs.NArg() == nargs:
	case nargs == 0:
		return fmt.Errorf("unexpected arguments: %q (flags come as --name=value)", fs.Args())
	default:
		fs.Usage()
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := envName(f.Name)
		val := env.getenv(name)
		ok := val != ""
		if file := env.getenv(name + "_FILE"); secretFlags[f.Name] && file != "" && !ok {
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
				return
			}
			val, ok = strings.TrimSpace(string(b)), true
		}
		if !ok {
			return
		}
		if err := fs.Set(f.Name, val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		set[f.Name] = true
	})
	return errors.Join(errs...)
}

// common are the settings every long-running subcommand has.
type common struct {
	logLevel        string
	logFormat       string
	adminAddr       string
	drainDelay      time.Duration
	shutdownTimeout time.Duration
	pprof           bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json, or text for humans")
	fs.StringVar(&c.adminAddr, "admin-addr", ":9090", "address of the admin listener (/livez, /readyz, /metrics)")
	fs.DurationVar(&c.drainDelay, "drain-delay", 0, "on SIGTERM, how long to stay up not-ready before closing listeners, so load balancers stop routing here first (a few seconds in Kubernetes)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests and the votes the worker holds may take to finish on shutdown")
	fs.BoolVar(&c.pprof, "pprof", false, "serve /debug/pprof/ on the admin listener")
}

// optionsFlag holds --options. The original app's OPTION_A and OPTION_B variables still
// work: when --options is not set, they rename the two default options.
type optionsFlag struct {
	opts voting.Options
	set  bool
}

func (o *optionsFlag) String() string {
	if o.opts == nil {
		return voting.DefaultOptions
	}
	return o.opts.String()
}

func (o *optionsFlag) Set(s string) error {
	opts, err := voting.ParseOptions(s)
	if err != nil {
		return err
	}
	o.opts, o.set = opts, true
	return nil
}

func registerOptions(fs *flag.FlagSet) *optionsFlag {
	o := &optionsFlag{}
	fs.Var(o, "options", "the poll's options, a `list` of id=Label, comma-separated (2 to 12); OPTION_A and OPTION_B rename the default a and b")
	return o
}

// resolve returns the configured options, applying OPTION_A/OPTION_B to the defaults.
func (o *optionsFlag) resolve(env *cmdEnv) (voting.Options, error) {
	if o.set {
		return o.opts, nil
	}
	opts, err := voting.ParseOptions(voting.DefaultOptions)
	if err != nil {
		return nil, err
	}
	for i, name := range []string{"OPTION_A", "OPTION_B"} {
		if v := strings.TrimSpace(env.getenv(name)); v != "" {
			opts[i].Label = v
		}
	}
	return voting.ParseOptions(opts.String()) // validates the labels
}

// requireURL fails with a message naming the flag and its variable when a split service is
// started without a server URL it needs: an in-process queue or store cannot join separate
// processes and would silently lose every vote.
func requireURL(cmd, flagName, val, what string) error {
	if val == "" {
		return fmt.Errorf("--%s (or %s) is required: %s needs %s; use `voting all` to run everything in one process without servers",
			flagName, envName(flagName), cmd, what)
	}
	return nil
}

// maskURL hides the secrets of a server URL for logs: the password, and any query
// parameter that may hold one. Anything that is not a URL is not shown at all.
func maskURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(set, not shown)"
	}
	q := u.Query()
	for k := range q {
		if k != "sslmode" && k != "search_path" && k != "application_name" {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// pageFlags are the flags of the services that serve a page: the poll's options, the
// proxies whose X-Forwarded-For names the client (vote's rate limit and result's WebSocket
// limit per client both tell clients apart by it), and the version label and accent colour
// that tell the versions of a rollout apart on both pages. `voting all` registers them once.
type pageFlags struct {
	options      *optionsFlag
	proxies      string
	versionLabel string
	accentColor  string
}

func (f *pageFlags) register(fs *flag.FlagSet) {
	f.options = registerOptions(fs)
	fs.StringVar(&f.proxies, "trusted-proxies", "", "comma-separated addresses or CIDRs of proxies whose X-Forwarded-For names the client, for --rate-limit and --max-websockets-per-client")
	fs.StringVar(&f.versionLabel, "version-label", "", fmt.Sprintf("a name for this version (a canary, blue or green), shown as a badge on the pages, sent in the %s header of every answer and a label of voting_build_info; printable ASCII, at most %d characters; empty: none", web.VersionHeader, web.MaxVersionLabelLen))
	fs.StringVar(&f.accentColor, "accent-color", "", "the pages' accent colour, a bar along the top and the version badge: #rgb, #rrggbb or one of "+strings.Join(web.AccentNames(), ", ")+"; a label of voting_build_info; empty: the pages' own colours")
}

// rollout is what voting_build_info says of this version.
func (f *pageFlags) rollout() telemetry.Rollout {
	return telemetry.Rollout{VersionLabel: f.versionLabel, AccentColor: f.accentColor}
}

// resolve returns the options and the trusted proxies. When the options are wrong it returns
// the default ones with the error, so that the services' Validate report their other
// problems and not this one twice; wrong proxies are another error, with none trusted.
func (f *pageFlags) resolve(env *cmdEnv) (voting.Options, *ratelimit.Proxies, error) {
	var errs []error
	opts, err := f.options.resolve(env)
	if err != nil {
		opts, _ = voting.ParseOptions(voting.DefaultOptions)
		errs = append(errs, fmt.Errorf("options: %w", err))
	}
	proxies, err := ratelimit.ParseProxies(f.proxies)
	if err != nil {
		proxies = &ratelimit.Proxies{}
		errs = append(errs, fmt.Errorf("--trusted-proxies: %w", err))
	}
	return opts, proxies, errors.Join(errs...)
}

// joinUnique joins errs as errors.Join does, leaving out any error whose message came
// before: `voting all` checks the settings vote and result share twice. Errors made by
// errors.Join are taken apart first (recognised by their message, their parts' joined by
// newlines; an error that wraps several with a message of its own stays whole).
func joinUnique(errs ...error) error {
	var out []error
	seen := map[string]bool{}
	var add func(err error)
	add = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			parts := j.Unwrap()
			msgs := make([]string, len(parts))
			for i, e := range parts {
				msgs[i] = e.Error()
			}
			if strings.Join(msgs, "\n") == err.Error() {
				for _, e := range parts {
					add(e)
				}
				return
			}
		}
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	for _, err := range errs {
		add(err)
	}
	return errors.Join(out...)
}

// config is a subcommand's configuration: it registers its flags and, once they are parsed,
// resolves and checks them, reporting every problem at once.
type config interface {
	register(fs *flag.FlagSet)
	resolve(env *cmdEnv) error
}

// parseConfig parses a subcommand's command line and environment into c.
func parseConfig(name, summary string, env *cmdEnv, args []string, c config) error {
	fs := newFlagSet(name, env, summary)
	c.register(fs)
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	return c.resolve(env)
}
