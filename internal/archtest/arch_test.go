package archtest

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/corralhq/corral"

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Standard   bool
	Module     *struct{ Path string }
}

func goList(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestAgentImportAllowlist keeps corral-agent small and free of server code:
// no SQL driver, no web UI, no Prometheus, nothing under internal/server or
// internal/store.
func TestAgentImportAllowlist(t *testing.T) {
	allowedModules := map[string]bool{
		module: true, "github.com/spf13/cobra": true, "github.com/spf13/pflag": true,
		"github.com/coder/websocket": true, "golang.org/x/sys": true, "github.com/inconshreveable/mousetrap": true,
		// inotify for the local configuration and the files guest rules read.
		"github.com/fsnotify/fsnotify": true,
		// internal/agent/jit drives nftables over netlink (about 1 MB; x/net/bpf and x/sync come with mdlayher/netlink).
		"github.com/google/nftables": true, "github.com/mdlayher/netlink": true, "github.com/mdlayher/socket": true,
		"golang.org/x/net": true, "golang.org/x/sync": true,
	}
	for _, p := range goList(t, "-deps", "./cmd/corral-agent") {
		if p.Standard {
			continue
		}
		if p.Module == nil || !allowedModules[p.Module.Path] {
			mod := "<none>"
			if p.Module != nil {
				mod = p.Module.Path
			}
			t.Errorf("corral-agent depends on %s (module %s), which is not on its allowlist", p.ImportPath, mod)
			continue
		}
		for _, banned := range []string{module + "/internal/server", module + "/internal/store", module + "/internal/loadgen"} {
			if p.ImportPath == banned || strings.HasPrefix(p.ImportPath, banned+"/") {
				t.Errorf("corral-agent imports server-side package %s", p.ImportPath)
			}
		}
	}
}

// TestWireImportsNothingOfOurs keeps the wire contract a leaf.
func TestWireImportsNothingOfOurs(t *testing.T) {
	for _, p := range goList(t, "-deps", "./internal/wire") {
		if strings.HasPrefix(p.ImportPath, module+"/") && p.ImportPath != module+"/internal/wire" {
			t.Errorf("internal/wire imports %s", p.ImportPath)
		}
	}
}

// TestEveryPackageHasADocComment: comments say why and the contract a reader
// cannot see; a package without one fails.
func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range goList(t, "./...") {
		if len(p.GoFiles) == 0 {
			continue
		}
		documented := false
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				documented = true
				break
			}
		}
		if !documented {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}
