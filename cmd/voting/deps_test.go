package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNoTemplatesOrGRPCInBinary keeps text/template, html/template and grpc out of the
// binary. Once text/template is linked, the linker must keep every exported method of every
// reachable type, because templates call methods by name through reflection
// (reflect.Value.MethodByName): that cost about 9 MB of a 31 MB binary. grpc (which the
// stock OTLP exporters link, and which links html/template through golang.org/x/net/trace)
// is 2.3 MB more. Pages are written with html escaping by hand and traces are sent by
// internal/telemetry's own OTLP/HTTP transport instead.
func TestNoTemplatesOrGRPCInBinary(t *testing.T) {
	out := goListDeps(t)
	forbidden := func(p string) bool {
		return p == "text/template" || p == "html/template" ||
			p == "google.golang.org/grpc" || strings.HasPrefix(p, "google.golang.org/grpc/")
	}
	var found []string
	importers := map[string][]string{} // forbidden package -> allowed packages importing it
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		if forbidden(pkg) {
			found = append(found, pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if forbidden(imp) {
				importers[imp] = append(importers[imp], pkg)
			}
		}
	}
	if len(found) == 0 {
		return
	}
	var how []string
	for imp, by := range importers {
		how = append(how, imp+" imported by "+strings.Join(by, ", "))
	}
	slices.Sort(how)
	t.Errorf("the voting binary links %d forbidden packages (%s...):\n%s\n"+
		"Once text/template is linked, the linker keeps every exported method of every reachable "+
		"type (templates call methods by name through reflection): about 9 MB of the binary; grpc "+
		"is 2.3 MB more and links html/template. Write pages without templates and export traces "+
		"with internal/telemetry's OTLP/HTTP transport.",
		len(found), strings.Join(found[:min(3, len(found))], ", "), strings.Join(how, "\n"))
}

// TestImageBuildHasNoSQLite: the container image is built with -tags nosqlite (see the
// Dockerfile) to leave the 4 MB SQLite library out; nothing else may bring it back in.
func TestImageBuildHasNoSQLite(t *testing.T) {
	for line := range strings.Lines(string(goListDeps(t, "-tags", "nosqlite"))) {
		if pkg := strings.Fields(line); len(pkg) > 0 && strings.HasPrefix(pkg[0], "modernc.org/") {
			t.Fatalf("the -tags nosqlite build links %s: the image would carry the SQLite library", pkg[0])
		}
	}
}

// goListDeps returns `go list -deps` of this command with the build flags given: one line per
// package, its import path, then the packages it imports.
func goListDeps(t *testing.T, flags ...string) []byte {
	t.Helper()
	goBin := goCommand()
	if goBin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no go command on PATH; it is needed to list the binary's dependencies")
		}
		t.Skip("no go command on PATH to list the binary's dependencies")
	}
	args := append(append([]string{"list", "-deps"}, flags...), "-f", `{{.ImportPath}} {{join .Imports " "}}`, ".")
	cmd := exec.Command(goBin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	return out
}

// goCommand returns the go command, or "". `go test` puts its own toolchain's bin first on
// the PATH of the tests it runs, so this is the toolchain running the test.
func goCommand() string {
	p, err := exec.LookPath("go")
	if err != nil {
		return ""
	}
	return p
}
