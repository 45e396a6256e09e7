// Package workflows holds the supply-chain rules of the GitHub Actions workflows, checked on
// the workflows as actionlint itself parses them (the parser GitHub's syntax is checked with in
// scripts/actionlint), so that a rule sees jobs, steps, inputs and conditions rather than lines:
//
//   - nothing is pushed or signed on a pull request, whose code is not yet reviewed, and
//     pull_request_target, which runs with the base repository's token, is not used at all;
//   - every remote action and reusable workflow is pinned by a full commit SHA, with the
//     release it is in a comment, because a tag can be moved to other code after review;
//   - the workflow's token is read-only, and each write scope is held only by the jobs whose
//     steps need it, so that a compromised step elsewhere cannot push, sign or release;
//   - the Trivy scan that gates the image fails the job on fixable CRITICAL and HIGH findings.
//
// The tests in this package apply Check to every file in .github/workflows, and show each
// rule failing on a small workflow that breaks it.
package workflows

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/rhysd/actionlint"
)

// Result is what Check finds in one workflow file.
type Result struct {
	// Problems are the broken rules, each "path:line: what is wrong: what to do".
	Problems []string
	// TrivyGates counts the Trivy steps that fail their job on findings, so that a caller can
	// require that some workflow still scans the image at all.
	TrivyGates int
}

// kind is what a step does that a rule cares about.
type kind int

const (
	pushPackage   kind = iota // pushes an image or a chart to a registry
	createRelease             // creates or changes a GitHub release
	sign                      // signs keylessly with cosign
	attest                    // stores a signed attestation with GitHub's attest actions
	uploadSARIF               // uploads SARIF to code scanning
)

// publishing says which kinds must never run on a pull request: they write where users fetch
// from, or vouch for what was built. (Uploading SARIF is a report about the pull request.)
var publishing = map[kind]bool{pushPackage: true, createRelease: true, sign: true, attest: true}

// writeScopes is the one table of token scopes a job may hold with write access, each with the
// kinds of step that need it. A job holding a scope none of its steps needs is an error, and so
// is a scope that is not in this table.
type scopeRule struct {
	scope string
	needs []kind
	what  string
}

var writeScopes = []scopeRule{
	{"id-token", []kind{sign, attest}, "sign keylessly (cosign sign, sign-blob, attest; GitHub's attest actions)"},
	{"packages", []kind{pushPackage}, "push an image or a chart (build-push-action with push: true, helm push, docker push)"},
	{"contents", []kind{createRelease}, "create the GitHub release (gh release)"},
	{"security-events", []kind{uploadSARIF}, "upload SARIF to code scanning"},
	{"attestations", []kind{attest}, "store attestations (GitHub's attest actions)"},
}

// A step's use of an action, by the action's name (without @ref, lower case).
var actionKinds = map[string]kind{
	"softprops/action-gh-release":       createRelease,
	"actions/attest":                    attest,
	"actions/attest-build-provenance":   attest,
	"actions/attest-sbom":               attest,
	"github/codeql-action/upload-sarif": uploadSARIF,
}

// The commands in run: scripts, by kind. They match anywhere in the script, comments included:
// a false alarm is cheaper than a missed push.
var runKinds = []struct {
	re   *regexp.Regexp
	kind kind
}{
	{regexp.MustCompile(`\bhelm\s+push\b`), pushPackage},
	{regexp.MustCompile(`\bdocker\s+(image\s+)?push\b`), pushPackage},
	{regexp.MustCompile(`\bdocker\s+buildx\s+build\b[^\n]*\s--push\b`), pushPackage},
	{regexp.MustCompile(`\bdocker\s+buildx\s+imagetools\s+create\b`), pushPackage},
	{regexp.MustCompile(`\b(oras|crane)\s+push\b`), pushPackage},
	{regexp.MustCompile(`\bgh\s+release\b`), createRelease},
	{regexp.MustCompile(`\bcosign\s+(sign-blob|sign|attest-blob|attest)\b`), sign},
}

var (
	sha40       = regexp.MustCompile(`^[0-9a-f]{40}$`)
	digestRef   = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	versionNote = regexp.MustCompile(`\s#\s*v\d+(\.\d+)*\b`)
)

// step is one step of a job with what the rules need of it.
type step struct {
	line  int
	what  string // how messages name it
	kinds []kind
}

// Check applies every rule to the workflow file at path (the name messages carry) with the
// given contents.
func Check(path string, src []byte) Result {
	var r Result
	problem := func(line int, format string, args ...any) {
		r.Problems = append(r.Problems, fmt.Sprintf("%s:%d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	w, errs := actionlint.Parse(src)
	for _, e := range errs {
		problem(e.Line, "%s: fix the workflow's syntax first (scripts/actionlint says more)", e.Message)
	}
	if w == nil {
		return r
	}
	lines := strings.Split(string(src), "\n")

	// Triggers: a workflow that pull requests trigger must keep its publishing jobs off them.
	onPullRequest := false
	for _, ev := range w.On {
		line := 1
		if we, ok := ev.(*actionlint.WebhookEvent); ok && we.Pos != nil {
			line = we.Pos.Line
		}
		switch ev.EventName() {
		case "pull_request_target":
			problem(line, "pull_request_target runs a pull request's workflow with the base repository's token and secrets: use pull_request")
		case "pull_request":
			onPullRequest = true
		}
	}

	// The workflow's own token: read-only, so that a job asks for any write it needs itself.
	if w.Permissions == nil {
		problem(1, "no top-level permissions: the token then gets the repository's default, which may be write access to everything: add `permissions: contents: read`")
	} else if p := w.Permissions; p.All != nil {
		problem(p.Pos.Line, "top-level permissions %q: set `permissions: contents: read` and give each job that needs more its own permissions:", p.All.Value)
	} else {
		for _, name := range sortedScopes(p) {
			if s := p.Scopes[name]; name != "contents" || s.Value.Value != "read" {
				problem(s.Name.Pos.Line, "top-level permissions give %s: %s to every job: keep only `contents: read` there and give %s to the jobs that need it, in their own permissions:", name, s.Value.Value, name)
			}
		}
	}

	jobs := make([]*actionlint.Job, 0, len(w.Jobs))
	for _, j := range w.Jobs {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].Pos.Line < jobs[b].Pos.Line })

	for _, j := range jobs {
		id := j.ID.Value
		if j.WorkflowCall != nil {
			checkPinned(j.WorkflowCall.Uses, lines, problem)
		}
		var steps []step
		has := map[kind]bool{}
		trivyLine, gates := 0, 0
		for _, s := range j.Steps {
			st := describe(s)
			if a, ok := s.Exec.(*actionlint.ExecAction); ok {
				checkPinned(a.Uses, lines, problem)
				if trivy, gate := checkTrivy(id, s, a, problem); trivy {
					if trivyLine == 0 {
						trivyLine = s.Pos.Line
					}
					if gate {
						gates++
					}
				}
			}
			for _, k := range st.kinds {
				has[k] = true
			}
			steps = append(steps, st)
		}
		if trivyLine > 0 && gates == 0 {
			problem(trivyLine, "job %s runs Trivy, but no Trivy step of it fails the job: on the step that gates the image set exit-code: \"1\", severity: CRITICAL,HIGH and ignore-unfixed: true (exit-code: \"0\" only on report-only steps such as the SARIF one)", id)
		}
		r.TrivyGates += gates

		// Nothing published from a pull request.
		if onPullRequest && !excludesPullRequest(j.If) {
			for _, st := range steps {
				for _, k := range st.kinds {
					if publishing[k] {
						problem(st.line, "job %s %s, and it can run on pull_request: give the job an if: that excludes pull requests, such as github.event_name == 'push' or startsWith(github.ref, 'refs/tags/v')", id, st.what)
						break
					}
				}
			}
		}

		// Least permissions.
		needsWrite := false
		for _, ws := range writeScopes {
			if slices.ContainsFunc(ws.needs, func(k kind) bool { return has[k] }) {
				needsWrite = true
			}
		}
		p := j.Permissions
		if p == nil {
			if needsWrite {
				problem(j.Pos.Line, "job %s pushes, signs, releases or uploads SARIF with the workflow's read-only token: give it its own permissions: with the write scopes it needs", id)
			}
			continue
		}
		if p.All != nil {
			problem(p.Pos.Line, "job %s has permissions %q: name each scope it needs instead", id, p.All.Value)
			continue
		}
		for _, name := range sortedScopes(p) {
			s := p.Scopes[name]
			if s.Value.Value != "write" {
				continue
			}
			i := slices.IndexFunc(writeScopes, func(ws scopeRule) bool { return ws.scope == name })
			if i < 0 {
				problem(s.Name.Pos.Line, "job %s has %s: write, which no rule allows: drop it, or add the scope to writeScopes in tools/workflows with the steps that need it", id, name)
				continue
			}
			if !slices.ContainsFunc(writeScopes[i].needs, func(k kind) bool { return has[k] }) {
				problem(s.Name.Pos.Line, "job %s has %s: write, but no step of it needs it (only jobs that %s do): drop it", id, name, writeScopes[i].what)
			}
		}
		if has[sign] || has[attest] {
			if s := p.Scopes["id-token"]; s == nil || s.Value.Value != "write" {
				problem(p.Pos.Line, "job %s signs, but its permissions have no id-token: write, without which keyless signing gets no OIDC token: add it", id)
			}
		}
	}
	return r
}

// describe finds what a step does.
func describe(s *actionlint.Step) step {
	st := step{line: s.Pos.Line}
	switch e := s.Exec.(type) {
	case *actionlint.ExecAction:
		name := actionName(e.Uses.Value)
		st.what = "uses " + name
		if k, ok := actionKinds[name]; ok {
			st.kinds = append(st.kinds, k)
		}
		// push: true pushes; so does an expression, which may be true.
		if name == "docker/build-push-action" {
			if in := e.Inputs["push"]; in != nil && in.Value.Value != "false" {
				st.kinds = append(st.kinds, pushPackage)
				st.what = "pushes an image (docker/build-push-action with push: " + in.Value.Value + ")"
			}
		}
	case *actionlint.ExecRun:
		if e.Run == nil {
			break
		}
		for _, rk := range runKinds {
			if m := rk.re.FindString(e.Run.Value); m != "" {
				if !slices.Contains(st.kinds, rk.kind) {
					st.kinds = append(st.kinds, rk.kind)
				}
				if st.what == "" {
					st.what = "runs `" + strings.Join(strings.Fields(m), " ") + "`"
				}
			}
		}
		if e.RunPos != nil {
			st.line = e.RunPos.Line
		}
	}
	if len(st.kinds) > 0 && s.Name != nil && !strings.HasPrefix(st.what, "pushes") {
		st.what += " (step " + s.Name.Value + ")"
	}
	return st
}

// actionName is the action of a uses: value, without its ref, in lower case as GitHub compares.
func actionName(uses string) string {
	if i := strings.LastIndex(uses, "@"); i >= 0 {
		uses = uses[:i]
	}
	return strings.ToLower(uses)
}

// checkPinned: a remote action or reusable workflow at a full commit SHA, which no one can move,
// with the release it is in as a comment, which is what a reviewer and Dependabot read.
func checkPinned(uses *actionlint.String, lines []string, problem func(int, string, ...any)) {
	if uses == nil {
		return
	}
	v, line := uses.Value, uses.Pos.Line
	switch {
	case strings.HasPrefix(v, "./"):
		return // this repository's own, at this commit
	case strings.HasPrefix(v, "docker://"):
		if !digestRef.MatchString(v) {
			problem(line, "%s is not pinned: name the image by digest, docker://image@sha256:<64 hex>", v)
		}
		return
	case uses.ContainsExpression():
		problem(line, "%s is chosen by an expression, so no review can see what runs: name the action and pin it by commit SHA", v)
		return
	}
	i := strings.LastIndex(v, "@")
	if i < 0 || !sha40.MatchString(v[i+1:]) {
		problem(line, "%s is not pinned by commit: use the full 40-hex SHA of the release's commit with the release in a comment, as in `uses: owner/repo@<sha> # v1.2.3`", v)
		return
	}
	if line < 1 || line > len(lines) || !versionNote.MatchString(lines[line-1]) {
		problem(line, "%s has no release comment: add the release the SHA is, as in `uses: owner/repo@<sha> # v1.2.3`", v)
	}
}

// checkTrivy checks one step if it runs aquasecurity/trivy-action, and says whether it does
// and whether it is a gate: a step with an exit-code other than "0". A gate must fail the job
// on every fixable CRITICAL or HIGH finding. Report-only steps (exit-code "0", or none, which
// is Trivy's default) are fine next to a gate; the caller objects to a job without one.
func checkTrivy(job string, s *actionlint.Step, a *actionlint.ExecAction, problem func(int, string, ...any)) (trivy, gate bool) {
	if actionName(a.Uses.Value) != "aquasecurity/trivy-action" {
		return false, false
	}
	input := func(name string) string {
		if in := a.Inputs[name]; in != nil && in.Value != nil {
			return strings.TrimSpace(in.Value.Value)
		}
		return ""
	}
	exit := input("exit-code")
	if exit == "" || exit == "0" {
		return true, false
	}
	if exit != "1" {
		problem(s.Pos.Line, "job %s: Trivy exit-code %q: use \"1\"", job, exit)
	}
	sev := map[string]bool{}
	for _, x := range strings.Split(input("severity"), ",") {
		sev[strings.ToUpper(strings.TrimSpace(x))] = true
	}
	if !sev["CRITICAL"] || !sev["HIGH"] {
		problem(s.Pos.Line, "job %s: Trivy severity %q misses CRITICAL or HIGH: set severity: CRITICAL,HIGH", job, input("severity"))
	}
	if input("ignore-unfixed") != "true" {
		problem(s.Pos.Line, "job %s: Trivy gate without ignore-unfixed: true fails on findings no one can fix yet, and so gets switched off: set ignore-unfixed: true", job)
	}
	if c := s.ContinueOnError; c != nil && (c.Value || c.Expression != nil) {
		problem(c.Pos.Line, "job %s: continue-on-error on the Trivy gate lets the job pass with findings: remove it", job)
	}
	return true, true
}

// excludesPullRequest reports whether a job's if: is false on every pull_request event: it is
// a conjunction (&&) with one term that is, for a pull request, where github.event_name is
// "pull_request" and github.ref is refs/pull/<n>/merge:
//
//	github.event_name == '<any other event>'     github.event_name != 'pull_request'
//	github.ref == 'refs/heads/...' or 'refs/tags/...'
//	startsWith(github.ref, 'refs/heads/' or 'refs/tags/...')
//	github.ref_type == 'tag'
//
// Anything it cannot read counts as not excluding: the rule errs on the side of an error.
func excludesPullRequest(cond *actionlint.String) bool {
	if cond == nil {
		return false
	}
	src := strings.TrimSpace(cond.Value)
	if strings.HasPrefix(src, "${{") && strings.HasSuffix(src, "}}") {
		src = strings.TrimSpace(src[3 : len(src)-2])
	}
	expr, err := actionlint.NewExprParser().Parse(actionlint.NewExprLexer(src + "}}"))
	if err != nil {
		return false
	}
	var terms []actionlint.ExprNode
	var flatten func(n actionlint.ExprNode)
	flatten = func(n actionlint.ExprNode) {
		if l, ok := n.(*actionlint.LogicalOpNode); ok && l.Kind == actionlint.LogicalOpNodeKindAnd {
			flatten(l.Left)
			flatten(l.Right)
			return
		}
		terms = append(terms, n)
	}
	flatten(expr)
	return slices.ContainsFunc(terms, falseOnPullRequest)
}

func falseOnPullRequest(n actionlint.ExprNode) bool {
	isRef := func(s string) bool { return strings.HasPrefix(s, "refs/heads/") || strings.HasPrefix(s, "refs/tags/") }
	switch n := n.(type) {
	case *actionlint.CompareOpNode:
		prop, lit, ok := githubPropAndString(n.Left, n.Right)
		if !ok {
			return false
		}
		switch {
		case n.Kind == actionlint.CompareOpNodeKindEq && prop == "event_name":
			return !strings.HasPrefix(lit, "pull_request")
		case n.Kind == actionlint.CompareOpNodeKindNotEq && prop == "event_name":
			return lit == "pull_request"
		case n.Kind == actionlint.CompareOpNodeKindEq && prop == "ref":
			return isRef(lit)
		case n.Kind == actionlint.CompareOpNodeKindEq && prop == "ref_type":
			return lit == "tag"
		}
	case *actionlint.FuncCallNode:
		if strings.EqualFold(n.Callee, "startsWith") && len(n.Args) == 2 {
			prop, lit, ok := githubPropAndString(n.Args[0], n.Args[1])
			// The literal must be the prefix, not the subject: startsWith('refs/tags/v', github.ref).
			_, first := n.Args[0].(*actionlint.ObjectDerefNode)
			return ok && first && prop == "ref" && isRef(lit)
		}
	}
	return false
}

// githubPropAndString reads `github.<prop>` and a string literal, in either order.
func githubPropAndString(a, b actionlint.ExprNode) (prop, lit string, ok bool) {
	if _, isStr := a.(*actionlint.StringNode); isStr {
		a, b = b, a
	}
	d, ok1 := a.(*actionlint.ObjectDerefNode)
	s, ok2 := b.(*actionlint.StringNode)
	if !ok1 || !ok2 {
		return "", "", false
	}
	if v, ok := d.Receiver.(*actionlint.VariableNode); !ok || v.Name != "github" {
		return "", "", false
	}
	return d.Property, s.Value, true
}

func sortedScopes(p *actionlint.Permissions) []string {
	names := make([]string, 0, len(p.Scopes))
	for name := range p.Scopes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
