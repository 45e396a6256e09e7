// Command vulngate reads `govulncheck -format json` on stdin and fails when the code calls a
// vulnerable function of a third-party module. Vulnerabilities of the Go standard library are
// listed but do not fail: they are fixed by a newer Go release, not by this repository, and
// the toolchain here is pinned by go.mod.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
}

type message struct {
	Config  *json.RawMessage `json:"config"` // govulncheck's first message
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	stdlib, thirdParty := map[string]string{}, map[string]string{}
	sawConfig := false
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulngate: reading govulncheck output:", err)
			os.Exit(2)
		}
		sawConfig = sawConfig || m.Config != nil
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue // imported or required only: our code does not call it
		}
		where := fmt.Sprintf("%s@%s %s.%s (fixed in %s)", f.Trace[0].Module, f.Trace[0].Version, f.Trace[0].Package, f.Trace[0].Function, f.FixedVersion)
		if f.Trace[0].Module == "stdlib" || f.Trace[0].Module == "toolchain" {
			stdlib[f.OSV] = where
		} else {
			thirdParty[f.OSV] = where
		}
	}
	if !sawConfig {
		// Empty or foreign input: govulncheck did not run, which must not pass for a clean scan.
		fmt.Fprintln(os.Stderr, "vulngate: no govulncheck report on stdin")
		os.Exit(2)
	}
	print := func(title string, m map[string]string) {
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Printf("%s %s: %s\n", title, id, m[id])
		}
	}
	print("standard library (fixed by a newer Go):", stdlib)
	print("THIRD-PARTY, CALLED:", thirdParty)
	fmt.Printf("vulngate: %d called in third-party modules, %d in the standard library\n", len(thirdParty), len(stdlib))
	if len(thirdParty) > 0 {
		os.Exit(1)
	}
}
