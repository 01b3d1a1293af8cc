package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: a policy definition (as Azure exports it, uploaded by an
// administrator) is refused with ErrInvalidDefinition or parses into a
// definition that binds parameter values and evaluates against a machine
// without failing; parameter values are refused with ErrInvalidParameters
// or bound.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata", "builtin/definitions"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, []byte(`{}`))
		}
	}
	f.Add([]byte(`{"mode":"All","parameters":{"tagName":{"type":"String","defaultValue":"env"}},"policyRule":{"if":{"field":"[concat('tags[', parameters('tagName'), ']')]","exists":"false"},"then":{"effect":"audit"}}}`),
		[]byte(`{"tagName":{"value":"owner"}}`))
	f.Add([]byte(`{"policyRule":{"if":{"allOf":[{"field":"type","equals":"Corral.HybridCompute/machines"},{"not":{"field":"location","in":["a","b"]}}]},"then":{"effect":"deny"}}}`),
		[]byte(`null`))
	f.Add([]byte(`{"policyRule":{"if":{"value":"[length(field('tags'))]","greater":2},"then":{"effect":"[parameters('e')]"}},"parameters":{"e":{"type":"String","allowedValues":["audit","disabled"],"defaultValue":"audit"}}}`),
		[]byte(`{"e":"disabled"}`))
	f.Fuzz(func(t *testing.T, def, params []byte) {
		d, err := Parse(def)
		if err != nil {
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Fatalf("definition refused with %v, not ErrInvalidDefinition", err)
			}
			return
		}
		values, err := ParseParameterValues(params)
		if err != nil {
			if !errors.Is(err, ErrInvalidParameters) {
				t.Fatalf("parameters refused with %v, not ErrInvalidParameters", err)
			}
			return
		}
		p, err := d.BindParameters(values)
		if err != nil {
			if !errors.Is(err, ErrInvalidParameters) {
				t.Fatalf("binding refused with %v, not ErrInvalidParameters", err)
			}
			return
		}
		_ = d.Effect(p)
		for _, r := range []*Resource{MachineResource(testMachine(), testExtensions(), nil), MachineResource(testMachine(), nil, nil)} {
			d.Evaluate(r, &p)
		}
	})
}
