package builtin

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/corralhq/corral/internal/policy"
	"github.com/corralhq/corral/internal/policy/guest"
)

//go:embed definitions/*.json configurations/*.json
var content embed.FS

// Catalog is the set of built-in definitions and machine configurations.
type Catalog struct {
	defs    map[string]*policy.Definition
	raw     map[string][]byte
	configs map[string]*guest.Configuration
}

// Load parses the embedded definitions and configurations.
func Load() (*Catalog, error) {
	c := &Catalog{defs: map[string]*policy.Definition{}, raw: map[string][]byte{}, configs: map[string]*guest.Configuration{}}
	err := fs.WalkDir(content, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := content.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(path.Base(p), ".json")
		switch path.Dir(p) {
		case "definitions":
			def, err := policy.Parse(b)
			if err != nil {
				return fmt.Errorf("built-in definition %s: %w", name, err)
			}
			if def.Name != name {
				return fmt.Errorf("built-in definition %s is named %q", p, def.Name)
			}
			c.defs[name], c.raw[name] = def, b
		case "configurations":
			cfg, err := guest.ParseConfiguration(b)
			if err != nil {
				return fmt.Errorf("built-in machine configuration %s: %w", name, err)
			}
			if cfg.Name != name {
				return fmt.Errorf("built-in machine configuration %s is named %q", p, cfg.Name)
			}
			c.configs[name] = cfg
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, d := range c.defs {
		if gc := d.GuestConfiguration; gc != nil {
			if _, ok := c.configs[gc.Name]; !ok {
				return nil, fmt.Errorf("built-in definition %s refers to machine configuration %q, which is not built in", name, gc.Name)
			}
		}
	}
	return c, nil
}

// Definitions lists the built-in definitions by name.
func (c *Catalog) Definitions() []*policy.Definition {
	out := make([]*policy.Definition, 0, len(c.defs))
	for _, d := range c.defs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Definition returns a built-in definition by name.
func (c *Catalog) Definition(name string) (*policy.Definition, bool) {
	d, ok := c.defs[name]
	return d, ok
}

// DefinitionJSON returns a built-in definition as shipped (for display).
func (c *Catalog) DefinitionJSON(name string) ([]byte, bool) {
	b, ok := c.raw[name]
	return bytes.Clone(b), ok
}

// Configurations lists the built-in machine configurations by name.
func (c *Catalog) Configurations() []*guest.Configuration {
	out := make([]*guest.Configuration, 0, len(c.configs))
	for _, g := range c.configs {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Configuration returns a built-in machine configuration by name.
func (c *Catalog) Configuration(name string) (*guest.Configuration, bool) {
	g, ok := c.configs[name]
	return g, ok
}

// ErrNoGuestConfiguration: the definition evaluates nothing inside machines.
var ErrNoGuestConfiguration = errors.New("the definition has no machine configuration (metadata.guestConfiguration)")

// Resolve finds the machine configuration for `corral policy test
// --definition REF`: a built-in definition or configuration name, or a file
// holding a definition (whose metadata.guestConfiguration.name is built in)
// or a machine configuration. It returns the configuration and the
// definition's name ("" when REF is a configuration).
func (c *Catalog) Resolve(ref string) (*guest.Configuration, string, error) {
	if d, ok := c.defs[ref]; ok {
		if d.GuestConfiguration == nil {
			return nil, "", fmt.Errorf("definition %s: %w", ref, ErrNoGuestConfiguration)
		}
		return c.configs[d.GuestConfiguration.Name], d.Name, nil
	}
	if g, ok := c.configs[ref]; ok {
		return g, "", nil
	}
	b, err := os.ReadFile(ref)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%q is neither a built-in definition (%s) nor a file", ref, strings.Join(c.names(), ", "))
		}
		return nil, "", err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		// Let the definition parser report the line and column.
		_, perr := policy.Parse(b)
		return nil, "", fmt.Errorf("%s: %w", ref, perr)
	}
	if _, isConfig := probe["rules"]; isConfig {
		g, err := guest.ParseConfiguration(b)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", ref, err)
		}
		return g, "", nil
	}
	d, err := policy.Parse(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", ref, err)
	}
	if d.GuestConfiguration == nil {
		return nil, "", fmt.Errorf("%s: %w", ref, ErrNoGuestConfiguration)
	}
	g, ok := c.configs[d.GuestConfiguration.Name]
	if !ok {
		return nil, "", fmt.Errorf("%s: machine configuration %q is not built in; pass the machine configuration file itself", ref, d.GuestConfiguration.Name)
	}
	name := d.Name
	if name == "" {
		name = d.DisplayName
	}
	return g, name, nil
}

func (c *Catalog) names() []string {
	var n []string
	for k := range c.defs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
