package archtest

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func repoGraph(t *testing.T) Graph {
	t.Helper()
	root, err := moduleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	g, err := LoadGraph(root, module)
	if err != nil {
		t.Fatal(err)
	}
	if len(g["internal/server/inventory"]) == 0 || len(g["internal/store/sqlstore"]) == 0 {
		t.Fatalf("the import graph misses packages (%d packages): the loader is broken", len(g))
	}
	return g
}

func report(t *testing.T, vs []Violation) {
	t.Helper()
	for _, v := range vs {
		t.Error(v)
	}
}

// TestImportRules: contexts import only the kernel, the store no server
// package, the web UI no context, store or handler, leaves nothing.
func TestImportRules(t *testing.T) { report(t, CheckRules(repoGraph(t), Rules)) }

// TestNoPackageImportsItsAncestor: no package imports one above it, except
// the declared contract packages.
func TestNoPackageImportsItsAncestor(t *testing.T) {
	report(t, CheckNoAncestorImports(repoGraph(t), AncestorContracts))
}

// TestNoImportCycles also covers files the compiler never builds together
// (other build tags).
func TestNoImportCycles(t *testing.T) { report(t, CheckNoCycles(repoGraph(t))) }

// TestRulesFailWhenBroken runs every rule on testdata/broken, a module whose
// files break each rule on purpose (each broken import says so): every
// rule must name exactly those imports, and nothing once they are removed.
func TestRulesFailWhenBroken(t *testing.T) {
	g, err := LoadGraph("testdata/broken", "example.com/broken")
	if err != nil {
		t.Fatal(err)
	}
	edges := func(vs []Violation) []string {
		out := []string{}
		for _, v := range vs {
			out = append(out, v.From+" -> "+v.To)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		check func(Graph) []Violation
		want  []string
	}{
		{"import rules", func(g Graph) []Violation { return CheckRules(g, Rules) }, []string{
			"internal/cli -> internal/server/inventory",
			"internal/resource -> internal/wire",
			"internal/server/inventory -> internal/server/httpapi",
			"internal/server/inventory -> internal/server/identity",
			"internal/server/push -> internal/server",
			"internal/server/webui -> internal/store",
			"internal/store/sqlstore -> internal/server/refusal",
		}},
		{"no ancestor imports", func(g Graph) []Violation { return CheckNoAncestorImports(g, AncestorContracts) }, []string{
			"internal/server/push -> internal/server",
		}},
		{"no cycles", CheckNoCycles, []string{
			"internal/b -> internal/a",
			"internal/server/push -> internal/server",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := tc.check(g)
			if d := cmp.Diff(tc.want, edges(vs)); d != "" {
				t.Errorf("violations (-want +got):\n%s", d)
			}
			fixed := Graph{}
			for p, tos := range g {
				fixed[p] = slices.DeleteFunc(slices.Clone(tos), func(to string) bool {
					return slices.Contains(tc.want, p+" -> "+to)
				})
			}
			// Removing the closing edge of each cycle found breaks it.
			if vs := tc.check(fixed); len(vs) != 0 {
				t.Errorf("still violated once the broken imports are gone: %v", vs)
			}
		})
	}
	// The rule messages say what is wrong.
	for _, v := range CheckRules(g, Rules) {
		if v.Rule == "" || v.String() == "" {
			t.Errorf("violation without a reason: %+v", v)
		}
	}
}

// TestLoadGraphSkipsTests: a test file may import what the package may not.
func TestLoadGraphSkipsTests(t *testing.T) {
	g, err := LoadGraph("testdata/broken", "example.com/broken")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(g["internal/server/inventory"], "internal/store/sqlstore") {
		t.Error("the graph holds an import of a _test.go file")
	}
	if d := cmp.Diff([]string{"internal/server/httpapi", "internal/server/identity", "internal/server/refusal", "internal/store"},
		g["internal/server/inventory"]); d != "" {
		t.Errorf("imports of inventory (-want +got):\n%s", d)
	}
}
