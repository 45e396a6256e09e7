// Command prunelego writes the copy of lego (github.com/go-acme/lego/v5) that tools/traefik
// builds Traefik with: the version that tools/traefik/go.mod requires, taken from the Go
// module cache, without any of its ACME DNS-01 providers. The cluster checks never ask Traefik
// for a certificate, and the providers are a third of the packages in Traefik's build (their
// cloud SDKs; the proxy refuses the modules of 13 of them outright), so a cold build takes
// minutes less. Only DNS-01 challenges are lost: Traefik answers any provider name with lego's
// own "unrecognized DNS provider" error; HTTP-01 and TLS-ALPN-01 challenges are untouched.
//
// Run it in tools/traefik with `go run ./cmd/prunelego` (scripts/traefik-tool does). It reads
// go.mod for the lego version and for the directory that go.mod replaces lego with, and
// writes that directory, which is generated and ignored by git: lego is not our code. Go
// commands that load Traefik's packages in tools/traefik (build, go mod tidy) need it. A stamp
// file records what the copy was made from, so a second run with nothing changed returns at
// once. It fails if the registry of providers is not shaped as it expects, or if anything in
// the copy still imports a provider.
//
// It runs the go command found on PATH, which `go run` puts first: the toolchain that runs it.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	legoModule = "github.com/go-acme/lego/v5"
	// dnsDir holds one package per DNS provider and the generated file that imports them all.
	dnsDir      = "providers/dns"
	dnsRegistry = dnsDir + "/zz_gen_dns_providers.go"
	stampFile   = ".prunelego"
	// stampFormat changes whenever the way the copy is made changes, so old copies are redone.
	stampFormat = "prunelego 2: every DNS provider cut"
	// registryTest is the registry's test, which imports a provider.
	registryTest = dnsDir + "/dns_providers_test.go"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("prunelego: ")
	dir := flag.String("C", ".", "the tools/traefik module directory")
	flag.Parse()
	if err := run(*dir); err != nil {
		log.Fatal(err)
	}
}

func run(modDir string) error {
	version, target, err := readGoMod(modDir)
	if err != nil {
		return err
	}
	src, err := download(legoModule + "@" + version)
	if err != nil {
		return err
	}
	stamp := stampFormat + "\n" + legoModule + " " + version + " " + src.Sum + "\n"
	if old, err := os.ReadFile(filepath.Join(target, stampFile)); err == nil && string(old) == stamp {
		log.Printf("%s is up to date", target)
		return nil
	}

	log.Printf("copying %s %s into %s without its DNS providers", legoModule, version, target)
	tmp, err := os.MkdirTemp(filepath.Dir(target), filepath.Base(target)+".partial-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing left to remove once it has been renamed
	providers, err := copyPruned(src.Dir, tmp)
	if err != nil {
		return err
	}
	if err := pruneRegistry(filepath.Join(tmp, filepath.FromSlash(dnsRegistry)), providers); err != nil {
		return err
	}
	if err := checkNoImports(tmp); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, stampFile), []byte(stamp), 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(target); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		// Another run may have finished first; its copy will do if it is the same.
		if old, rerr := os.ReadFile(filepath.Join(target, stampFile)); rerr == nil && string(old) == stamp {
			return nil
		}
		return err
	}
	return nil
}

// readGoMod returns the lego version that go.mod requires and the directory it replaces lego
// with, which must be a directory inside the module (not a module version, not elsewhere).
func readGoMod(modDir string) (version, target string, err error) {
	out, err := goCmd(modDir, "mod", "edit", "-json")
	if err != nil {
		return "", "", err
	}
	var mf struct {
		Require []struct{ Path, Version string }
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &mf); err != nil {
		return "", "", fmt.Errorf("go mod edit -json: %v", err)
	}
	for _, r := range mf.Require {
		if r.Path == legoModule {
			version = r.Version
		}
	}
	for _, r := range mf.Replace {
		if r.Old.Path == legoModule && r.Old.Version == "" && r.New.Version == "" {
			target = r.New.Path
		}
	}
	if version == "" {
		return "", "", fmt.Errorf("%s/go.mod does not require %s", modDir, legoModule)
	}
	if !strings.HasPrefix(target, "./") || strings.Contains(target, "..") {
		return "", "", fmt.Errorf("%s/go.mod must replace %s (all versions) with a directory ./name inside the module, not %q", modDir, legoModule, target)
	}
	return version, filepath.Join(modDir, filepath.FromSlash(target)), nil
}

type module struct{ Dir, Sum, Error string }

// download puts a module version into the module cache (or finds it there) and returns its
// directory. It runs outside any module, so that go.mod's replace cannot redirect it.
func download(modVersion string) (module, error) {
	out, err := goCmd(os.TempDir(), "mod", "download", "-json", modVersion)
	var m module
	if jerr := json.Unmarshal(out, &m); jerr != nil {
		return m, errors.Join(err, jerr)
	}
	if m.Error != "" {
		return m, fmt.Errorf("go mod download %s: %s", modVersion, m.Error)
	}
	if err != nil {
		return m, err
	}
	if m.Dir == "" || m.Sum == "" {
		return m, fmt.Errorf("go mod download %s: no directory or checksum in %s", modVersion, out)
	}
	return m, nil
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("go %s: %v", strings.Join(args, " "), err)
	}
	return out, nil
}

// copyPruned copies the module tree src into dst (which exists), leaving out every directory
// under providers/dns (one package per provider, and their shared internal packages) and the
// registry's test, and returns the names of the provider directories it left out. The module
// cache's files are read-only; the copies are not.
func copyPruned(src, dst string) (map[string]bool, error) {
	providers := map[string]bool{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		slash := filepath.ToSlash(rel)
		if dir, name := path.Split(slash); dir == dnsDir+"/" && d.IsDir() {
			providers[name] = true
			return filepath.SkipDir
		}
		if slash == registryTest {
			return nil
		}
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(out, 0o755)
		case d.Type().IsRegular():
			return copyFile(p, out)
		default:
			return fmt.Errorf("%s in %s is not a regular file", rel, src)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(providers) < 100 {
		return nil, fmt.Errorf("found only %d provider directories under %s/%s; has lego moved them?", len(providers), src, dnsDir)
	}
	return providers, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// pruneRegistry removes from the generated registry of providers every import of a provider
// and every case of the switch in NewDNSChallengeProviderByName that calls a provider's
// NewDNSProvider (some cases list two names, such as "edgedns", "fastdns"), leaving its default
// case, lego's "unrecognized DNS provider" error. Every provider imported must have its case,
// and every import and case must be a provider left out of the copy. The file is parsed to
// find them and the lines they occupy are cut from its text, so the rest of the file stays as
// lego generated it.
func pruneRegistry(file string, providers map[string]bool) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, text, parser.ParseComments)
	if err != nil {
		return err
	}
	var remove []ast.Node
	imported := map[string]bool{}
	for _, spec := range f.Imports {
		p, err := strconv.Unquote(spec.Path.Value)
		if err != nil {
			return err
		}
		dir, name := path.Split(p)
		if dir != legoModule+"/"+dnsDir+"/" {
			continue
		}
		if spec.Name != nil || !providers[name] {
			return fmt.Errorf("%s: unexpected import %s %s", dnsRegistry, spec.Name, p)
		}
		imported[name] = true
		remove = append(remove, spec)
	}
	called := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if cc, ok := n.(*ast.CaseClause); ok {
			if name := providerCalled(cc); name != "" {
				called[name] = true
				remove = append(remove, cc)
			}
		}
		return true
	})
	for name := range imported {
		if !called[name] {
			return fmt.Errorf("%s: provider %s is imported but no `case ...: return %s.NewDNSProvider()` calls it", dnsRegistry, name, name)
		}
	}
	for name := range called {
		if !imported[name] {
			return fmt.Errorf("%s: a case calls %s.NewDNSProvider() but no provider %s is imported", dnsRegistry, name, name)
		}
	}
	if len(imported) < 100 {
		return fmt.Errorf("%s: only %d providers found; has lego changed how it generates the registry?", dnsRegistry, len(imported))
	}
	tf := fset.File(f.Pos())
	drop := make([]bool, tf.LineCount()+1)
	for _, n := range remove {
		for l := tf.Line(n.Pos()); l <= tf.Line(n.End()); l++ {
			drop[l] = true
		}
	}
	var out bytes.Buffer
	for i, line := range bytes.SplitAfter(text, []byte("\n")) {
		if i+1 >= len(drop) || !drop[i+1] {
			out.Write(line)
		}
	}
	src, err := format.Source(out.Bytes())
	if err != nil {
		return fmt.Errorf("%s after the cut: %v", dnsRegistry, err)
	}
	// What is left must not mention a provider any more.
	f, err = parser.ParseFile(token.NewFileSet(), file, src, 0)
	if err != nil {
		return err
	}
	var left []string
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && imported[id.Name] {
				left = append(left, id.Name+"."+sel.Sel.Name)
			}
		}
		return true
	})
	if len(left) > 0 {
		return fmt.Errorf("%s still uses %s after the cut", dnsRegistry, strings.Join(left, ", "))
	}
	return os.WriteFile(file, src, 0o644)
}

// providerCalled returns p if the case clause's body is exactly `return p.NewDNSProvider()`.
func providerCalled(cc *ast.CaseClause) string {
	if len(cc.Body) != 1 {
		return ""
	}
	ret, ok := cc.Body[0].(*ast.ReturnStmt)
	if !ok || len(ret.Results) != 1 {
		return ""
	}
	call, ok := ret.Results[0].(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return ""
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "NewDNSProvider" {
		return ""
	}
	if id, ok := sel.X.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// checkNoImports fails if any Go file in the copy still imports a package under providers/dns.
func checkNoImports(root string) error {
	prefix := legoModule + "/" + dnsDir + "/"
	var bad []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, spec := range f.Imports {
			if ip, _ := strconv.Unquote(spec.Path.Value); strings.HasPrefix(ip, prefix) {
				rel, _ := filepath.Rel(root, p)
				bad = append(bad, fmt.Sprintf("%s imports %s", filepath.ToSlash(rel), ip))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("the pruned copy still imports a DNS provider:\n\t%s", strings.Join(bad, "\n\t"))
	}
	return nil
}
