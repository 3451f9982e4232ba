package transform

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Command groups the transforms one command of the command line runs
// (quantize runs quantize/int8, quantize/int4...). Its parameters, the
// union of its transforms', are the command's transform flags and the
// keys of a recipe step naming the command.
type Command struct {
	// Name is the command's name (quantize, merge, sparsify...).
	Name string
	// Transforms are the command's transforms, in the order help lists
	// them.
	Transforms []*Transform
	// Choose picks the transform that values select (values hold the
	// command's defaults for what was not given); nil when the command
	// has a single transform. Its error says which values are allowed.
	Choose func(values Args) (*Transform, error)
}

// Params returns the union of the transforms' parameters by name, in
// order of first declaration. Where the transforms declare different
// defaults for one name (quantize's symmetric: true for int8, false for
// int4), the returned parameter has no default and Defaults tells them.
func (c *Command) Params() []*Param {
	var out []*Param
	idx := map[string]int{}
	for _, t := range c.Transforms {
		for _, p := range t.Params {
			i, ok := idx[p.Name]
			if !ok {
				idx[p.Name] = len(out)
				out = append(out, p)
				continue
			}
			if out[i].Default != p.Default {
				q := *out[i]
				q.Default = ""
				out[i] = &q
			}
		}
	}
	return out
}

// Param returns the command's parameter named name (see Params), or nil.
func (c *Command) Param(name string) *Param {
	for _, p := range c.Params() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Defaults returns, for a parameter whose default depends on the
// transform, each transform's default ("quantize/int8" → "true").
func (c *Command) Defaults(name string) map[string]string {
	out := map[string]string{}
	for _, t := range c.Transforms {
		if p := t.Param(name); p != nil {
			out[t.Name] = p.Default
		}
	}
	return out
}

// Transform returns the command's transform named name (with or without
// the "command/" prefix), or nil.
func (c *Command) Transform(name string) *Transform {
	for _, t := range c.Transforms {
		if t.Name == name || t.Name == c.Name+"/"+name {
			return t
		}
	}
	return nil
}

// Check validates values, the command's parameters as given on a command
// line or in a recipe step, before anything runs: it picks the transform
// they select and checks every value through that transform's declaration
// of the parameter (or, for a parameter only other transforms of the
// command declare, through the command's). Keys that are no parameter of
// the command are left to the caller (they are the command's other
// flags). It returns the transform and its bound Args. Every problem is
// reported; errors wrap ErrValue.
func (c *Command) Check(values map[string]any) (*Transform, Args, error) {
	given := map[string]any{}
	for k, v := range values {
		if c.Param(k) != nil {
			given[k] = v
		}
	}

	t := c.Transforms[0]
	if c.Choose != nil {
		sel := Args{}
		for _, p := range c.Params() {
			if p.Default != "" {
				sel[p.Name] = p.Default
			}
		}
		for k, v := range given {
			sel[k] = c.Param(k).Canonical(v)
		}
		var err error
		if t, err = c.Choose(sel); err != nil {
			// every value through the command's declaration: the report
			// when the values select no transform
			if err := c.CheckValues(given); err != nil {
				return nil, nil, err
			}
			return nil, nil, fmt.Errorf("%w: %v", ErrValue, err)
		}
	}
	own := map[string]any{}
	var errs []error
	for _, k := range sortedKeys(given) {
		if t.Param(k) != nil {
			own[k] = given[k]
		} else if err := c.Param(k).Check(given[k]); err != nil {
			errs = append(errs, err)
		}
	}
	args, err := t.Bind(own)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return t, args, nil
}

// CheckValues checks each of values that is a parameter of the command
// through the command's declaration of it (Params), without choosing a
// transform: for callers that get the selecting values elsewhere (a merge
// whose method a config file gives).
func (c *Command) CheckValues(values map[string]any) error {
	var errs []error
	for _, k := range sortedKeys(values) {
		if p := c.Param(k); p != nil {
			if err := p.Check(values[k]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*(/[a-z0-9][a-z0-9,-]*)?$`)

// Validate checks a registry of commands the way analysis.Validate checks
// analyzers: unique command and transform names of the form
// "command/variant", a Doc and a Run on every transform, well-formed
// parameters (a name, a usage text, a known kind, choices for an enum, a
// Validate func for a pattern, a default its own Check accepts), and one
// kind per parameter name within a command. It reports every problem.
func Validate(cmds []*Command) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seenCmd, seenT := map[string]bool{}, map[string]bool{}
	for _, c := range cmds {
		if !namePattern.MatchString(c.Name) || strings.Contains(c.Name, "/") {
			bad("command name %q is not a lower-case word", c.Name)
		}
		if seenCmd[c.Name] {
			bad("command %q is declared twice", c.Name)
		}
		seenCmd[c.Name] = true
		if len(c.Transforms) == 0 {
			bad("command %q has no transforms", c.Name)
		}
		if len(c.Transforms) > 1 && c.Choose == nil {
			bad("command %q has %d transforms but no Choose", c.Name, len(c.Transforms))
		}
		kinds := map[string]Kind{}
		for _, t := range c.Transforms {
			switch {
			case !strings.HasPrefix(t.Name, c.Name+"/") || !namePattern.MatchString(t.Name):
				bad("transform %q of command %q is not named %s/variant", t.Name, c.Name, c.Name)
			case seenT[t.Name]:
				bad("transform %q is declared twice", t.Name)
			}
			seenT[t.Name] = true
			if strings.TrimSpace(t.Doc) == "" {
				bad("transform %s has no Doc", t.Name)
			}
			if t.Run == nil {
				bad("transform %s has no Run", t.Name)
			}
			names := map[string]bool{}
			for _, p := range t.Params {
				if names[p.Name] {
					bad("transform %s declares parameter %q twice", t.Name, p.Name)
				}
				names[p.Name] = true
				if k, ok := kinds[p.Name]; ok && k != p.Kind {
					bad("command %s: parameter %q is a %s in one transform and a %s in %s", c.Name, p.Name, k, p.Kind, t.Name)
				}
				kinds[p.Name] = p.Kind
				if err := p.wellFormed(); err != nil {
					bad("transform %s: parameter %q: %v", t.Name, p.Name, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (p *Param) wellFormed() error {
	switch {
	case p.Name == "" || strings.ContainsAny(p.Name, " =\t") || strings.HasPrefix(p.Name, "-"):
		return errors.New("bad name")
	case strings.TrimSpace(p.Doc) == "":
		return errors.New("no Doc")
	case p.Kind < Float || p.Kind > List:
		return fmt.Errorf("unknown kind %d", int(p.Kind))
	case p.Kind == Enum && len(p.Choices) == 0:
		return errors.New("an enum without choices")
	case p.Kind == Pattern && p.Validate == nil:
		return errors.New("a pattern without a Validate func")
	}
	if p.Default != "" {
		if err := p.Check(p.Default); err != nil {
			return fmt.Errorf("default: %v", err)
		}
	}
	return nil
}
