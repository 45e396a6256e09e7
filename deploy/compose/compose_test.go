package compose

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
)

// The app's contract (see the CLI contract in the design notes): the one image, its user, the
// probe command, and how long its clean shutdown may take.
const (
	appImage        = "ghcr.io/votingapp/voting:dev"
	appUser         = "65532:65532"
	shutdownTimeout = 10 * time.Second
)

var (
	probe = []string{"CMD", "/voting", "healthcheck", "http://127.0.0.1:9090/readyz"}

	// Services running the app image; the one-shots exit and have no health check.
	longRunning = []string{"vote", "worker", "result"}
	oneShots    = []string{"migrate", "seed"}
	datastores  = []string{"redis", "postgres"}
)

// mustLoad loads compose.yaml the way `docker compose --env-file .env.example` does, with only
// the variables of .env.example (not the caller's environment), so the test is hermetic.
func mustLoad(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnvFiles(".env.example"),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatalf("project options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	return p
}

func mustService(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func mustEnvExample(t *testing.T) map[string]string {
	t.Helper()
	env, err := dotenv.GetEnvFromFile(nil, []string{".env.example"})
	if err != nil {
		t.Fatalf("read .env.example: %v", err)
	}
	return env
}

func TestServicesAndProfiles(t *testing.T) {
	p := mustLoad(t)
	if p.Name != "voting" {
		t.Errorf("project name %q, want voting", p.Name)
	}
	got := p.ServiceNames()
	slices.Sort(got)
	want := []string{"migrate", "postgres", "redis", "result", "vote", "worker"}
	if !slices.Equal(got, want) {
		t.Errorf("services without a profile: got %v, want %v", got, want)
	}
	if _, ok := p.DisabledServices["seed"]; !ok {
		t.Errorf("seed should be behind a profile, disabled by default")
	}

	p = mustLoad(t, "seed")
	seed := mustService(t, p, "seed")
	if !slices.Equal(seed.Profiles, []string{"seed"}) {
		t.Errorf("seed profiles %v, want [seed]", seed.Profiles)
	}
	wantCmd := []string{"loadgen", "--url", "http://vote:8080", "--seed"}
	if !slices.Equal(seed.Command, wantCmd) {
		t.Errorf("seed command %v, want %v", seed.Command, wantCmd)
	}
}

func TestCommands(t *testing.T) {
	p := mustLoad(t)
	for svc, want := range map[string][]string{
		"migrate": {"migrate"},
		"vote":    {"vote"},
		"worker":  {"worker"},
		"result":  {"result"},
	} {
		if got := mustService(t, p, svc).Command; !slices.Equal(got, want) {
			t.Errorf("%s command %v, want %v", svc, got, want)
		}
	}
}

func TestNetworks(t *testing.T) {
	p := mustLoad(t, "seed")
	want := map[string][]string{
		"redis":    {"back-tier"},
		"postgres": {"back-tier"},
		"migrate":  {"back-tier"},
		"worker":   {"back-tier"},
		"vote":     {"back-tier", "front-tier"},
		"result":   {"back-tier", "front-tier"},
		"seed":     {"front-tier"},
	}
	for _, s := range p.Services {
		var got []string
		for n := range s.Networks {
			got = append(got, n)
		}
		slices.Sort(got)
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("service %s has no expectation in this test; add one", s.Name)
			continue
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s networks %v, want %v", s.Name, got, w)
		}
	}
	for _, name := range datastores {
		s := mustService(t, p, name)
		if _, ok := s.Networks["front-tier"]; ok {
			t.Errorf("datastore %s is on front-tier", name)
		}
		if len(s.Ports) != 0 {
			t.Errorf("datastore %s publishes ports %v", name, s.Ports)
		}
	}
	if !p.Networks["back-tier"].Internal {
		t.Errorf("back-tier should be internal: the datastores need no route out")
	}
	if p.Networks["front-tier"].Internal {
		t.Errorf("front-tier must not be internal: it carries the published ports")
	}
}

func TestPublishedPorts(t *testing.T) {
	p := mustLoad(t, "seed")
	want := map[string]uint32{"vote": 8080, "result": 8081}
	for _, s := range p.Services {
		port, ok := want[s.Name]
		if !ok {
			if len(s.Ports) != 0 {
				t.Errorf("%s publishes %v; only vote and result should", s.Name, s.Ports)
			}
			continue
		}
		if len(s.Ports) != 1 {
			t.Fatalf("%s ports %v, want one", s.Name, s.Ports)
		}
		got := s.Ports[0]
		if got.Target != port || got.Published != strconv.Itoa(int(port)) || got.HostIP != "127.0.0.1" {
			t.Errorf("%s port %+v, want 127.0.0.1:%d->%d", s.Name, got, port, port)
		}
	}
}

func TestAppContainersHardened(t *testing.T) {
	p := mustLoad(t, "seed")
	for _, name := range append(slices.Clone(longRunning), oneShots...) {
		t.Run(name, func(t *testing.T) {
			s := mustService(t, p, name)
			if s.Image != appImage {
				t.Errorf("image %q, want %q (one image for every service)", s.Image, appImage)
			}
			if s.User != appUser {
				t.Errorf("user %q, want %q", s.User, appUser)
			}
			if !s.ReadOnly {
				t.Errorf("read_only is false")
			}
			if !slices.Equal(s.CapDrop, []string{"ALL"}) {
				t.Errorf("cap_drop %v, want [ALL]", s.CapDrop)
			}
			if len(s.CapAdd) != 0 {
				t.Errorf("cap_add %v, want none", s.CapAdd)
			}
			if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
				t.Errorf("security_opt %v lacks no-new-privileges:true", s.SecurityOpt)
			}
			if s.Privileged {
				t.Errorf("privileged")
			}
			if len(s.Volumes) != 0 {
				t.Errorf("volumes %v: the split services need no writable path", s.Volumes)
			}
			if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= shutdownTimeout {
				t.Errorf("stop_grace_period %v, want more than the %v shutdown timeout", s.StopGracePeriod, shutdownTimeout)
			}
			assertLimits(t, s)

			oneShot := slices.Contains(oneShots, name)
			switch {
			case oneShot && s.Restart != types.RestartPolicyNo:
				t.Errorf("one-shot restart %q, want %q", s.Restart, types.RestartPolicyNo)
			case !oneShot && s.Restart != types.RestartPolicyUnlessStopped:
				t.Errorf("restart %q, want %q", s.Restart, types.RestartPolicyUnlessStopped)
			}
			hc := s.HealthCheck
			switch {
			case oneShot && (hc == nil || !hc.Disable):
				t.Errorf("one-shot health check %+v, want disabled (it serves no /readyz)", hc)
			case !oneShot && (hc == nil || hc.Disable || !slices.Equal([]string(hc.Test), probe)):
				t.Errorf("health check %+v, want test %v", hc, probe)
			case !oneShot && (hc.Interval == nil || hc.Retries == nil || hc.StartPeriod == nil):
				t.Errorf("health check %+v lacks interval, retries or start_period", hc)
			}
		})
	}
}

// assertLimits checks CPU, memory and PID limits, and that GOMEMLIMIT is left to the binary
// (80% of the memory limit, cmd/voting/memlimit.go): one set here would win.
func assertLimits(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	if s.Deploy == nil || s.Deploy.Resources.Limits == nil {
		t.Fatalf("no deploy.resources.limits")
	}
	l := s.Deploy.Resources.Limits
	if l.NanoCPUs <= 0 || l.MemoryBytes <= 0 || l.Pids <= 0 {
		t.Errorf("limits cpus=%v memory=%v pids=%v, want all set", l.NanoCPUs, l.MemoryBytes, l.Pids)
	}
	if v, ok := s.Environment["GOMEMLIMIT"]; ok {
		t.Errorf("GOMEMLIMIT=%v set; the binary takes 80%% of the memory limit itself", v)
	}
}

func TestDependsOn(t *testing.T) {
	p := mustLoad(t, "seed")
	const healthy, done = types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully
	want := map[string]map[string]string{
		"migrate": {"postgres": healthy},
		"vote":    {"redis": healthy},
		"worker":  {"redis": healthy, "postgres": healthy, "migrate": done},
		"result":  {"postgres": healthy, "migrate": done},
		"seed":    {"vote": healthy},
	}
	for name, deps := range want {
		s := mustService(t, p, name)
		if len(s.DependsOn) != len(deps) {
			t.Errorf("%s depends_on %v, want %v", name, s.DependsOn, deps)
		}
		for dep, cond := range deps {
			got, ok := s.DependsOn[dep]
			if !ok || got.Condition != cond || !got.Required {
				t.Errorf("%s depends_on %s: %+v, want required, condition %s", name, dep, got, cond)
			}
		}
	}
}

func TestDatastores(t *testing.T) {
	p := mustLoad(t)
	redis := mustService(t, p, "redis")
	if !regexp.MustCompile(`^redis:7\.\d+\.\d+-alpine$`).MatchString(redis.Image) {
		t.Errorf("redis image %q, want an official 7.x.y-alpine tag (patch-pinned)", redis.Image)
	}
	cmd := strings.Join(redis.Command, " ")
	if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--appendfsync everysec") {
		t.Errorf("redis command %q, want AOF with fsync every second", cmd)
	}
	// Half the 256M limit, refusing votes past it rather than dropping any (as in kustomize
	// and Helm: deploy/kubetest checks the ratio there).
	if !strings.Contains(cmd, "--maxmemory 128mb --maxmemory-policy noeviction") || redis.Deploy.Resources.Limits.MemoryBytes != 256<<20 {
		t.Errorf("redis command %q with a %d-byte limit, want --maxmemory 128mb --maxmemory-policy noeviction under 256M", cmd, redis.Deploy.Resources.Limits.MemoryBytes)
	}
	assertVolume(t, p, redis, "/data")
	assertHealthCheck(t, redis, "redis-cli ping")

	pg := mustService(t, p, "postgres")
	if !regexp.MustCompile(`^postgres:15\.\d+-alpine$`).MatchString(pg.Image) {
		t.Errorf("postgres image %q, want an official 15.x-alpine tag (minor-pinned)", pg.Image)
	}
	assertVolume(t, p, pg, "/var/lib/postgresql/data")
	assertHealthCheck(t, pg, "pg_isready")
	if pg.StopSignal != "SIGINT" {
		t.Errorf("postgres stop_signal %q, want SIGINT (fast shutdown)", pg.StopSignal)
	}

	for _, name := range datastores {
		s := mustService(t, p, name)
		if s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s restart %q", name, s.Restart)
		}
		if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes <= 0 {
			t.Errorf("%s has no memory limit", name)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s security_opt %v lacks no-new-privileges:true", name, s.SecurityOpt)
		}
	}
}

// assertVolume checks that target is a named volume declared at the top level, so the data
// outlives the container.
func assertVolume(t *testing.T, p *types.Project, s types.ServiceConfig, target string) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target != target {
			continue
		}
		if v.Type != types.VolumeTypeVolume {
			t.Errorf("%s %s is a %s, want a named volume", s.Name, target, v.Type)
		}
		if _, ok := p.Volumes[v.Source]; !ok {
			t.Errorf("%s volume %q is not declared at the top level", s.Name, v.Source)
		}
		return
	}
	t.Errorf("%s has no volume on %s", s.Name, target)
}

func assertHealthCheck(t *testing.T, s types.ServiceConfig, want string) {
	t.Helper()
	if s.HealthCheck == nil || s.HealthCheck.Disable || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), want) {
		t.Errorf("%s health check %+v, want one running %s", s.Name, s.HealthCheck, want)
	}
}

func TestCredentialsFromEnvFile(t *testing.T) {
	env := mustEnvExample(t)
	for _, k := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} {
		if env[k] == "" {
			t.Errorf(".env.example has no %s", k)
		}
	}
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), env["POSTGRES_PASSWORD"]) {
		t.Errorf("compose.yaml holds the password itself; it must come from .env")
	}

	p := mustLoad(t)
	pg := mustService(t, p, "postgres")
	for _, k := range []string{"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} {
		if v := pg.Environment[k]; v == nil || *v != env[k] {
			t.Errorf("postgres %s = %v, want %q from .env.example", k, v, env[k])
		}
	}
	wantPG := "postgres://" + env["POSTGRES_USER"] + ":" + env["POSTGRES_PASSWORD"] + "@postgres:5432/" + env["POSTGRES_DB"] + "?sslmode=disable"
	const wantRedis = "redis://redis:6379/0"
	for svc, want := range map[string]map[string]string{
		"migrate": {"VOTING_POSTGRES_URL": wantPG},
		"worker":  {"VOTING_POSTGRES_URL": wantPG, "VOTING_REDIS_URL": wantRedis},
		"result":  {"VOTING_POSTGRES_URL": wantPG},
		"vote":    {"VOTING_REDIS_URL": wantRedis},
	} {
		s := mustService(t, p, svc)
		for k, w := range want {
			if v := s.Environment[k]; v == nil || *v != w {
				t.Errorf("%s %s = %v, want %q", svc, k, v, w)
			}
		}
		// Least knowledge: a service gets only the URLs it uses.
		for _, k := range []string{"VOTING_POSTGRES_URL", "VOTING_REDIS_URL"} {
			if _, wanted := want[k]; !wanted && s.Environment[k] != nil {
				t.Errorf("%s gets %s, which it does not use", svc, k)
			}
		}
	}
}

// Without a .env (and nothing in the environment) the file refuses to load instead of starting
// PostgreSQL with an empty password.
func TestCredentialsRequired(t *testing.T) {
	// compose-go warns through logrus about each unset variable before failing; the error is
	// what this test reads.
	logrus.SetOutput(io.Discard)
	t.Cleanup(func() { logrus.SetOutput(os.Stderr) })
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithWorkingDirectory("."))
	if err != nil {
		t.Fatal(err)
	}
	_, err = opts.LoadProject(context.Background())
	if err == nil {
		t.Fatalf("compose.yaml loaded without credentials; want a required-variable error")
	}
	if !strings.Contains(err.Error(), "POSTGRES_PASSWORD") {
		t.Errorf("error %q does not name POSTGRES_PASSWORD", err)
	}
}

// vote refuses to start without --voter-key-file: it gets the keys as the compose secret
// voter_key, a file on the host (deploy/compose/voter-key unless VOTER_KEY_FILE names
// another), mounted where VOTING_VOTER_KEY_FILE points. No other service gets it.
func TestVoterKeySecret(t *testing.T) {
	const secret, wantPath = "voter_key", "/run/secrets/voter_key"
	p := mustLoad(t, "seed")
	for _, s := range p.Services {
		if s.Name == "vote" {
			continue
		}
		if len(s.Secrets) != 0 {
			t.Errorf("%s gets secrets %v; only vote uses the voter key", s.Name, s.Secrets)
		}
		if s.Environment["VOTING_VOTER_KEY_FILE"] != nil {
			t.Errorf("%s sets VOTING_VOTER_KEY_FILE; only vote uses the voter key", s.Name)
		}
	}

	vote := mustService(t, p, "vote")
	if len(vote.Secrets) != 1 || vote.Secrets[0].Source != secret {
		t.Fatalf("vote secrets %+v, want one: %s", vote.Secrets, secret)
	}
	// Where compose mounts it: /run/secrets/<source> by default, a relative target under
	// /run/secrets.
	target := vote.Secrets[0].Target
	switch {
	case target == "":
		target = "/run/secrets/" + secret
	case !strings.HasPrefix(target, "/"):
		target = "/run/secrets/" + target
	}
	if target != wantPath {
		t.Errorf("the voter key is mounted at %s, want %s", target, wantPath)
	}
	if v := vote.Environment["VOTING_VOTER_KEY_FILE"]; v == nil {
		t.Errorf("vote has no VOTING_VOTER_KEY_FILE; want %q, where the secret is mounted", target)
	} else if *v != target {
		t.Errorf("vote VOTING_VOTER_KEY_FILE = %q, want %q, where the secret is mounted", *v, target)
	}

	// A file secret: compose bind-mounts it read-only. The key itself is never in the model
	// (an environment or content secret would put it in compose.yaml or .env).
	def, ok := p.Secrets[secret]
	if !ok {
		t.Fatalf("secret %s is not declared at the top level", secret)
	}
	if bool(def.External) || def.Environment != "" || def.Content != "" || def.Driver != "" {
		t.Errorf("secret %s %+v, want a plain file secret", secret, def)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "voter-key"); def.File != want {
		t.Errorf("secret %s file %q, want %q (deploy/compose/voter-key, which make up creates)", secret, def.File, want)
	}
	if _, set := mustEnvExample(t)["VOTER_KEY_FILE"]; set {
		t.Errorf(".env.example sets VOTER_KEY_FILE; leave the default, deploy/compose/voter-key")
	}

	// VOTER_KEY_FILE names another file, as scripts/e2e-compose does for a throwaway key.
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnvFiles(".env.example"),
		cli.WithDotEnv,
		cli.WithEnv([]string{"VOTER_KEY_FILE=/tmp/e2e/voter-key"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err = opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load compose.yaml with VOTER_KEY_FILE: %v", err)
	}
	if got := p.Secrets[secret].File; got != "/tmp/e2e/voter-key" {
		t.Errorf("with VOTER_KEY_FILE=/tmp/e2e/voter-key the secret file is %q", got)
	}
}

func TestEnvFileIgnored(t *testing.T) {
	raw, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for _, f := range []string{".env", "voter-key"} {
		if !slices.Contains(lines, f) {
			t.Errorf("deploy/compose/.gitignore does not ignore %s", f)
		}
	}
}
