package workflows

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// TestRepositoryWorkflows applies every rule to every workflow of this repository.
func TestRepositoryWorkflows(t *testing.T) {
	var files []string
	for _, glob := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join("..", "..", ".github", "workflows", glob))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no workflow in .github/workflows: is the test run from tools/workflows?")
	}
	gates := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := Check(filepath.ToSlash(filepath.Join(".github", "workflows", filepath.Base(f))), src)
		for _, p := range r.Problems {
			t.Error(p)
		}
		gates += r.TrivyGates
	}
	if gates == 0 {
		t.Error(".github/workflows: no aquasecurity/trivy-action step gates the image: scan it with exit-code: \"1\", severity: CRITICAL,HIGH and ignore-unfixed: true")
	}
}

// good keeps every rule: the cases below each break one, by one edit of it.
const good = `name: ci
on:
  push:
    branches: [main]
    tags: ["v*"]
  pull_request:
permissions:
  contents: read
jobs:
  scan:
    runs-on: ubuntu-latest
    permissions:
      contents: read
      security-events: write
    steps:
      - uses: actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2
      - uses: ./.github/actions/local
      - uses: docker://alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
      - name: Trivy
        uses: aquasecurity/trivy-action@ed142fd0673e97e23eac54620cfb913e5ce36c25 # v0.36.0
        with:
          image-ref: img
          severity: CRITICAL,HIGH
          ignore-unfixed: true
          exit-code: "1"
      - name: Trivy SARIF
        uses: aquasecurity/trivy-action@ed142fd0673e97e23eac54620cfb913e5ce36c25 # v0.36.0
        with:
          image-ref: img
          format: sarif
          exit-code: "0"
      - uses: github/codeql-action/upload-sarif@8aad20d150bbac5944a9f9d289da16a4b0d87c1e # v4.36.2
        with:
          sarif_file: trivy-results.sarif
  publish:
    needs: scan
    if: github.event_name == 'push' && github.repository == 'votingapp/voting'
    runs-on: ubuntu-latest
    permissions:
      contents: read
      packages: write
      id-token: write
    steps:
      - name: Push
        id: push
        uses: docker/build-push-action@53b7df96c91f9c12dcc8a07bcb9ccacbed38856a # v7.3.0
        with:
          push: true
      - run: cosign sign --yes "img@${{ steps.push.outputs.digest }}"
      - run: helm push chart.tgz oci://ghcr.io/votingapp/charts
  release:
    needs: publish
    if: startsWith(github.ref, 'refs/tags/v')
    runs-on: ubuntu-latest
    permissions:
      contents: write
      id-token: write
    steps:
      - run: cosign sign-blob --yes --bundle SHA256SUMS.sigstore.json SHA256SUMS
      - run: gh release create "$TAG" dist/*
`

// TestRulesBite shows each rule failing: every case makes one edit to good and expects the
// rule's message, as "ci.yml:<line>: ...".
func TestRulesBite(t *testing.T) {
	const checkout = "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2"
	const trivyGate = `          severity: CRITICAL,HIGH
          ignore-unfixed: true
          exit-code: "1"`
	const publishPerms = `    permissions:
      contents: read
      packages: write
      id-token: write
`
	const scanPerms = `    permissions:
      contents: read
      security-events: write
`
	const publishIf = "    if: github.event_name == 'push' && github.repository == 'votingapp/voting'\n"
	cases := []struct {
		name, old, new string
		want           string // a part of one problem; "" when the edit keeps every rule
	}{
		// Pinning.
		{"action at a tag", checkout, "actions/checkout@v6 # v6", "actions/checkout@v6 is not pinned by commit"},
		{"action at a short SHA", checkout, "actions/checkout@de0fac2 # v6.0.2", "is not pinned by commit: use the full 40-hex SHA"},
		{"action at a branch", checkout, "actions/checkout@main", "is not pinned by commit"},
		{"SHA without its release", checkout, "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd", "has no release comment"},
		{"SHA with another comment", checkout, "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # latest", "has no release comment"},
		{"docker image by tag", "docker://alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "docker://alpine:3.20", "name the image by digest"},
		{"reusable workflow at a branch", "  release:\n", "  reuse:\n    uses: octo/flows/.github/workflows/build.yml@main\n  release:\n", "build.yml@main is not pinned by commit"},

		// Nothing pushed or signed on pull requests.
		{"pushing job without if", publishIf, "", "job publish pushes an image (docker/build-push-action with push: true), and it can run on pull_request"},
		{"pushing job's if admits pull requests", publishIf, "    if: github.event_name == 'push' || github.event_name == 'pull_request'\n", "can run on pull_request"},
		{"pushing job's if is only the repository", publishIf, "    if: github.repository == 'votingapp/voting'\n", "can run on pull_request"},
		{"push by an expression", "          sarif_file: trivy-results.sarif\n", "          sarif_file: trivy-results.sarif\n      - uses: docker/build-push-action@53b7df96c91f9c12dcc8a07bcb9ccacbed38856a # v7.3.0\n        with:\n          push: ${{ github.event_name == 'push' }}\n", "job scan pushes an image"},
		{"helm push on pull requests", "          sarif_file: trivy-results.sarif\n", "          sarif_file: trivy-results.sarif\n      - run: helm push c.tgz oci://r\n", "job scan runs `helm push`, and it can run on pull_request"},
		{"docker push on pull requests", "          sarif_file: trivy-results.sarif\n", "          sarif_file: trivy-results.sarif\n      - run: docker push img:pr\n", "runs `docker push`"},
		{"cosign on pull requests", "          sarif_file: trivy-results.sarif\n", "          sarif_file: trivy-results.sarif\n      - run: cosign sign --yes img@sha256:abc\n", "runs `cosign sign`, and it can run on pull_request"},
		{"attest action on pull requests", "          sarif_file: trivy-results.sarif\n", "          sarif_file: trivy-results.sarif\n      - uses: actions/attest-build-provenance@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa # v0.0.0 (a stand-in SHA: this case is about the trigger)\n", "uses actions/attest-build-provenance, and it can run on pull_request"},
		{"release on any ref", "    if: startsWith(github.ref, 'refs/tags/v')\n", "    if: always()\n", "job release runs `cosign sign-blob`"},
		{"release's startsWith reversed", "    if: startsWith(github.ref, 'refs/tags/v')\n", "    if: startsWith('refs/tags/v', github.ref)\n", "job release runs `cosign sign-blob`"},
		{"release on a tag ref type", "    if: startsWith(github.ref, 'refs/tags/v')\n", "    if: github.ref_type == 'tag'\n", ""},
		{"release on a ref not a pull request's", "    if: startsWith(github.ref, 'refs/tags/v')\n", "    if: github.event_name != 'pull_request'\n", ""},
		{"no pull_request trigger, no if needed", "  pull_request:\n", "", ""},
		{"pull_request_target", "  pull_request:\n", "  pull_request_target:\n", "pull_request_target runs a pull request's workflow with the base repository's token"},

		// Least permissions.
		{"no top-level permissions", "permissions:\n  contents: read\njobs:", "jobs:", "no top-level permissions"},
		{"top-level write-all", "permissions:\n  contents: read\njobs:", "permissions: write-all\njobs:", `top-level permissions "write-all"`},
		{"top-level packages: write", "permissions:\n  contents: read\njobs:", "permissions:\n  contents: read\n  packages: write\njobs:", "top-level permissions give packages: write to every job"},
		{"empty top-level permissions", "permissions:\n  contents: read\njobs:", "permissions: {}\njobs:", ""},
		{"pushing job without its own permissions", publishPerms, "", "job publish pushes, signs, releases or uploads SARIF with the workflow's read-only token"},
		{"SARIF job without its own permissions", scanPerms, "", "job scan pushes, signs, releases or uploads SARIF"},
		{"job write-all", publishPerms, "    permissions: write-all\n", `job publish has permissions "write-all"`},
		{"id-token where nothing signs", scanPerms, scanPerms + "      id-token: write\n", "job scan has id-token: write, but no step of it needs it"},
		{"packages where nothing pushes", scanPerms, scanPerms + "      packages: write\n", "job scan has packages: write, but no step of it needs it"},
		{"contents: write outside release", publishPerms, strings.Replace(publishPerms, "contents: read", "contents: write", 1), "job publish has contents: write, but no step of it needs it"},
		{"security-events where no SARIF is uploaded", publishPerms, publishPerms + "      security-events: write\n", "job publish has security-events: write, but no step of it needs it"},
		{"a write scope no rule allows", publishPerms, publishPerms + "      issues: write\n", "job publish has issues: write, which no rule allows"},
		{"signing without id-token", "      contents: write\n      id-token: write\n", "      contents: write\n", "job release signs, but its permissions have no id-token: write"},

		// The Trivy gate.
		{"Trivy exit-code 0", trivyGate, strings.Replace(trivyGate, `"1"`, `"0"`, 1), "job scan runs Trivy, but no Trivy step of it fails the job"},
		{"Trivy without exit-code", trivyGate, strings.Replace(trivyGate, "          exit-code: \"1\"", "", 1), "no Trivy step of it fails the job"},
		{"Trivy exit-code 2", trivyGate, strings.Replace(trivyGate, `"1"`, `"2"`, 1), `Trivy exit-code "2": use "1"`},
		{"Trivy CRITICAL only", trivyGate, strings.Replace(trivyGate, "CRITICAL,HIGH", "CRITICAL", 1), `Trivy severity "CRITICAL" misses CRITICAL or HIGH`},
		{"Trivy all severities", trivyGate, strings.Replace(trivyGate, "CRITICAL,HIGH", "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL", 1), ""},
		{"Trivy without ignore-unfixed", trivyGate, strings.Replace(trivyGate, "ignore-unfixed: true", "ignore-unfixed: false", 1), "Trivy gate without ignore-unfixed: true"},
		{"Trivy gate allowed to fail", "      - name: Trivy\n", "      - name: Trivy\n        continue-on-error: true\n", "continue-on-error on the Trivy gate"},

		// A workflow actionlint cannot parse is a problem too, not a pass.
		{"syntax error", "jobs:\n", "jobs:\n  - not a map\n", "fix the workflow's syntax first"},
	}

	if r := Check("ci.yml", []byte(good)); len(r.Problems) != 0 || r.TrivyGates != 1 {
		t.Fatalf("the good workflow breaks a rule (or has no Trivy gate, %d): %q", r.TrivyGates, r.Problems)
	}
	format := regexp.MustCompile(`^ci\.yml:[1-9][0-9]*: \S`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if n := strings.Count(good, c.old); n != 1 {
				t.Fatalf("the edit's old text is %d times in good, not once: %q", n, c.old)
			}
			bad := strings.Replace(good, c.old, c.new, 1)
			problems := Check("ci.yml", []byte(bad)).Problems
			for _, p := range problems {
				if !format.MatchString(p) {
					t.Errorf("problem not as file:line: message: %q", p)
				}
			}
			if c.want == "" {
				if len(problems) != 0 {
					t.Errorf("want no problem, got %q", problems)
				}
				return
			}
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("want a problem with %q, got %q", c.want, problems)
		})
	}
}

// TestProblemLine checks that a problem names the line to change.
func TestProblemLine(t *testing.T) {
	bad := strings.Replace(good, "actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2", "actions/checkout@v6", 1)
	problems := Check(".github/workflows/ci.yml", []byte(bad)).Problems
	if len(problems) != 1 || !strings.HasPrefix(problems[0], ".github/workflows/ci.yml:16: actions/checkout@v6 ") {
		t.Errorf("want one problem at .github/workflows/ci.yml:16, got %q", problems)
	}
}

// TestExcludesPullRequest: the conditions that keep a job off pull requests, and some that
// look as if they did but do not.
func TestExcludesPullRequest(t *testing.T) {
	for cond, want := range map[string]bool{
		"github.event_name == 'push'":                                true,
		"${{ github.event_name == 'push' }}":                         true,
		"'push' == github.event_name":                                true,
		"github.event_name == 'release'":                             true,
		"github.event_name != 'pull_request'":                        true,
		"github.ref == 'refs/heads/main'":                            true,
		"github.ref_type == 'tag'":                                   true,
		"startsWith(github.ref, 'refs/tags/v')":                      true,
		"always() && startsWith(github.ref, 'refs/tags/')":           true,
		"needs.a.outputs.x == 'true' && github.event_name == 'push'": true,
		"":                                    false,
		"always()":                            false,
		"github.event_name == 'pull_request'": false,
		"github.event_name != 'push'":         false,
		"github.event_name == 'push' || github.event_name == 'pull_request'": false,
		"!(github.event_name == 'pull_request')":                             false, // true, but not read: an error is the safe side
		"startsWith(github.ref, 'refs/')":                                    false,
		"github.ref != 'refs/heads/main'":                                    false,
		"github.head_ref == 'refs/heads/main'":                               false,
		"github.event_name == 'push' &&":                                     false, // does not parse
		"contains(github.ref, 'refs/tags/') || github.event_name == 'push'":  false,
	} {
		var s *actionlint.String
		if cond != "" {
			s = &actionlint.String{Value: cond}
		}
		if got := excludesPullRequest(s); got != want {
			t.Errorf("excludesPullRequest(%q) = %v, want %v", cond, got, want)
		}
	}
}
