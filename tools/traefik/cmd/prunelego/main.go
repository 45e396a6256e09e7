// Command prunelego writes the copy of lego (github.com/go-acme/lego/v5) that tools/traefik
// builds Traefik with: the version that tools/traefik/go.mod requires, taken from the Go
// module cache, without the DNS providers whose SDK modules the Go module proxy refuses to
// serve (403 "not available"), so that every module Traefik's build needs can be fetched.
// Only ACME DNS-01 challenges through those providers are lost.
//
// Run it in tools/traefik with `go run ./cmd/prunelego` (scripts/traefik-tool does). It reads
// go.mod for the lego version and for the directory that go.mod replaces lego with, and
// writes that directory, which is generated and ignored by git: lego is not our code. Go
// commands that load Traefik's packages in tools/traefik (build, go mod tidy) need it. A stamp
// file records what the copy was made from, so a second run with nothing changed returns at
// once. It fails if any provider it is meant to cut is not found exactly where it expects it,
// or if anything in the copy still imports a cut provider.
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
	stampFormat = "prunelego 1"
)

// cut lists the providers taken out, each with the modules of its SDK whose zips the proxy
// refuses (checked for lego v5.4.1's requirements in December 2026).
var cut = []struct {
	pkg  string
	sdks []string
}{
	{"alidns", []string{"github.com/go-acme/alidns-20150109/v5"}},
	{"aliesa", []string{"github.com/go-acme/esa-20240910/v3"}},
	{"azion", []string{"github.com/aziontech/azionapi-go-sdk"}},
	{"dnsimple", []string{"github.com/dnsimple/dnsimple-go/v9"}},
	{"edgedns", []string{"github.com/akamai/AkamaiOPEN-edgegrid-golang/v13"}},
	{"edgeone", []string{"github.com/go-acme/tencentedgdeone"}},
	{"huaweicloud", []string{"github.com/huaweicloud/huaweicloud-sdk-go-v3"}},
	{"oraclecloud", []string{"github.com/nrdcg/oci-go-sdk/common/v1065", "github.com/nrdcg/oci-go-sdk/dns/v1065"}},
	{"regfish", []string{"github.com/regfish/regfish-dnsapi-go"}},
	{"sakuracloud", []string{"github.com/sacloud/sacloud-sdk-go"}},
	{"tencentcloud", []string{"github.com/go-acme/tencentclouddnspod"}},
	{"ucloud", []string{"github.com/ucloud/ucloud-sdk-go"}},
	{"yandexcloud", []string{"github.com/yandex-cloud/go-sdk/services/dns"}},
}

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
	stamp := stampFormat + "\n" + legoModule + " " + version + " " + src.Sum + "\ncut:"
	for _, c := range cut {
		stamp += " " + c.pkg
	}
	stamp += "\n"
	if old, err := os.ReadFile(filepath.Join(target, stampFile)); err == nil && string(old) == stamp {
		log.Printf("%s is up to date", target)
		return nil
	}

	log.Printf("copying %s %s into %s without %d DNS providers", legoModule, version, target, len(cut))
	tmp, err := os.MkdirTemp(filepath.Dir(target), filepath.Base(target)+".partial-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // nothing left to remove once it has been renamed
	if err := copyPruned(src.Dir, tmp); err != nil {
		return err
	}
	if err := pruneRegistry(filepath.Join(tmp, filepath.FromSlash(dnsRegistry))); err != nil {
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

// copyPruned copies the module tree src into dst (which exists), leaving out the cut
// providers' package directories. The module cache's files are read-only; the copies are not.
func copyPruned(src, dst string) error {
	skip := map[string]bool{}
	for _, c := range cut {
		skip[dnsDir+"/"+c.pkg] = true
	}
	skipped := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		if skip[filepath.ToSlash(rel)] {
			if !d.IsDir() {
				return fmt.Errorf("%s in %s is not a directory", rel, src)
			}
			skipped++
			return filepath.SkipDir
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
		return err
	}
	if skipped != len(cut) {
		return fmt.Errorf("found %d of the %d provider directories to cut under %s/%s", skipped, len(cut), src, dnsDir)
	}
	return nil
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

// pruneRegistry removes from the generated registry of providers the import of each cut
// provider and the case of the switch in NewDNSChallengeProviderByName that calls its
// NewDNSProvider (some cases list two names, such as "edgedns", "fastdns"). Each must be found
// exactly once. The file is parsed to find them and the lines they occupy are cut from its
// text, so the rest of the file stays as lego generated it.
func pruneRegistry(file string) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, text, parser.ParseComments)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, c := range cut {
		names[c.pkg] = true
	}
	imports := map[string][]ast.Node{}
	for _, spec := range f.Imports {
		p, err := strconv.Unquote(spec.Path.Value)
		if err != nil {
			return err
		}
		if dir, name := path.Split(p); dir == legoModule+"/"+dnsDir+"/" && names[name] {
			if spec.Name != nil {
				return fmt.Errorf("%s: import of %s is renamed to %s", dnsRegistry, p, spec.Name.Name)
			}
			imports[name] = append(imports[name], spec)
		}
	}
	cases := map[string][]ast.Node{}
	ast.Inspect(f, func(n ast.Node) bool {
		if cc, ok := n.(*ast.CaseClause); ok {
			if name := providerCalled(cc); names[name] {
				cases[name] = append(cases[name], cc)
			}
		}
		return true
	})

	var remove []ast.Node
	for _, c := range cut {
		if len(imports[c.pkg]) != 1 || len(cases[c.pkg]) != 1 {
			return fmt.Errorf("%s: expected one import of provider %s and one `case ...: return %s.NewDNSProvider()`, found %d and %d",
				dnsRegistry, c.pkg, c.pkg, len(imports[c.pkg]), len(cases[c.pkg]))
		}
		remove = append(remove, imports[c.pkg][0], cases[c.pkg][0])
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
	// What is left must not mention a cut provider any more.
	f, err = parser.ParseFile(token.NewFileSet(), file, src, 0)
	if err != nil {
		return err
	}
	var left []string
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && names[id.Name] {
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

// checkNoImports fails if any Go file in the copy still imports a cut provider or its SDK.
func checkNoImports(root string) error {
	banned := map[string]bool{}
	var sdks []string
	for _, c := range cut {
		banned[legoModule+"/"+dnsDir+"/"+c.pkg] = true
		sdks = append(sdks, c.sdks...)
	}
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
			ip, _ := strconv.Unquote(spec.Path.Value)
			hit := banned[ip]
			for _, sdk := range sdks {
				hit = hit || ip == sdk || strings.HasPrefix(ip, sdk+"/")
			}
			if hit {
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
		return fmt.Errorf("the pruned copy still needs what was cut:\n\t%s", strings.Join(bad, "\n\t"))
	}
	return nil
}
