package monitoring

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

var promqlBlockRE = regexp.MustCompile("(?s)```promql\n(.*?)```")

// TestDocsQueries parses the example queries of docs/operations.md (its promql blocks, one
// query per line, # comments) and checks that each metric they read is documented there.
func TestDocsQueries(t *testing.T) {
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	anchors := docAnchors(t)
	n := 0
	for _, block := range promqlBlockRE.FindAllStringSubmatch(string(b), -1) {
		for line := range strings.Lines(block[1]) {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			n++
			e := parseExpr(t, docsPath, line)
			if e == nil {
				continue
			}
			for _, name := range metricNames(t, docsPath, e) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if strings.HasPrefix(name, "voting_") && !anchors[slug(base)] {
					t.Errorf("%s: the example %q reads %s, which has no section", docsPath, line, base)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("%s has no promql examples", docsPath)
	}
}
