package archtest

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Graph maps each package of a module (by path relative to the module
// root, e.g. "internal/server/inventory") to the packages of the same
// module it imports, sorted. Only non-test files count: tests may reach
// further (a context's test may open a real store).
type Graph map[string][]string

// LoadGraph reads the import clauses of every non-test .go file under root,
// the directory of the module whose path is module. Directories named
// testdata or vendor, or starting with "." or "_", are skipped, as the go
// tool does. Build constraints are ignored: a file excluded on this machine
// still may not break a rule.
func LoadGraph(root, module string) (Graph, error) {
	g := Graph{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		if _, ok := g[pkg]; !ok {
			g[pkg] = nil
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if p == module || strings.HasPrefix(p, module+"/") {
				if to := strings.TrimPrefix(strings.TrimPrefix(p, module), "/"); !slices.Contains(g[pkg], to) {
					g[pkg] = append(g[pkg], to)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for p := range g {
		slices.Sort(g[p])
	}
	return g, nil
}

// Violation is one import that breaks a rule.
type Violation struct {
	From, To string // packages, relative to the module
	Rule     string // what it breaks, for the failure message
}

func (v Violation) String() string { return fmt.Sprintf("%s imports %s: %s", v.From, v.To, v.Rule) }

// matches reports whether pkg matches pattern: a package path, a path
// ending in "/..." for it and every package below it, or "..." for all.
func matches(pattern, pkg string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pkg == pattern
}

func matchesAny(patterns []string, pkg string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matches(p, pkg) })
}

// Rule constrains the imports of the packages matching From but not
// Except: each import of ours must match one of Allow (when Allow is not
// nil; an empty, non-nil Allow allows nothing), and none may match Deny.
type Rule struct {
	Name   string
	From   []string
	Except []string
	Allow  []string
	Deny   []string
}

// CheckRules returns every import that breaks one of rules, in a stable order.
func CheckRules(g Graph, rules []Rule) []Violation {
	var out []Violation
	for _, pkg := range sortedKeys(g) {
		for _, r := range rules {
			if !matchesAny(r.From, pkg) || matchesAny(r.Except, pkg) {
				continue
			}
			for _, to := range g[pkg] {
				switch {
				case matchesAny(r.Deny, to):
					out = append(out, Violation{From: pkg, To: to, Rule: r.Name})
				case r.Allow != nil && !matchesAny(r.Allow, to):
					out = append(out, Violation{From: pkg, To: to, Rule: r.Name})
				}
			}
		}
	}
	return out
}

// CheckNoAncestorImports returns every import of a package by one below it
// ("one above it": internal/server/push importing internal/server), except
// of the ancestors in contracts — packages that only declare what their
// children implement or extend (internal/store: the persistence contract).
func CheckNoAncestorImports(g Graph, contracts map[string]string) []Violation {
	var out []Violation
	for _, pkg := range sortedKeys(g) {
		for _, to := range g[pkg] {
			above := to == "." || strings.HasPrefix(pkg, to+"/")
			if _, contract := contracts[to]; above && !contract {
				out = append(out, Violation{From: pkg, To: to, Rule: "a package may not import an ancestor directory's package (only the declared contract packages)"})
			}
		}
	}
	return out
}

// CheckNoCycles returns one violation per import cycle (its closing edge),
// found by depth-first search in sorted order.
func CheckNoCycles(g Graph) []Violation {
	const (
		unseen = iota
		open
		done
	)
	state := map[string]int{}
	var out []Violation
	var stack []string
	var visit func(p string)
	visit = func(p string) {
		state[p] = open
		stack = append(stack, p)
		for _, to := range g[p] {
			switch state[to] {
			case unseen:
				visit(to)
			case open:
				i := slices.Index(stack, to)
				cycle := append(slices.Clone(stack[i:]), to)
				out = append(out, Violation{From: p, To: to, Rule: "import cycle " + strings.Join(cycle, " -> ")})
			}
		}
		stack = stack[:len(stack)-1]
		state[p] = done
	}
	for _, p := range sortedKeys(g) {
		if state[p] == unseen {
			visit(p)
		}
	}
	return out
}

func sortedKeys(g Graph) []string {
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// moduleRoot finds the directory of the go.mod above dir.
func moduleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}
