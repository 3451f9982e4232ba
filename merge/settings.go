package merge

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Setting is one parameter's value as mergekit's YAML writes it: a scalar
// (weight: 0.5), a gradient (weight: [0, 0.3, 0.7, 1], interpolated across
// the layers) or a list of conditions ([{filter: mlp, value: 0.5},
// {value: 0}]: the first whose filter is a substring of the tensor's name,
// or has no filter or "*", gives the value).
type Setting struct {
	// Scalar is a scalar's text ("" when the setting is not a scalar).
	Scalar string
	// Gradient are a gradient's points.
	Gradient []float64
	// Conditions are a conditional list's entries.
	Conditions []Condition
	line       int
}

// Condition is one entry of a conditional Setting.
type Condition struct {
	// Filter is the substring a tensor's name must contain ("" or "*":
	// every tensor).
	Filter string
	// Value is the entry's value (a scalar or a gradient).
	Value Setting
}

// IsScalar reports whether s is a scalar.
func (s Setting) IsScalar() bool { return s.Gradient == nil && s.Conditions == nil }

// UnmarshalYAML reads a scalar, a list of numbers or a list of
// {filter, value} maps; anything else is an error naming the line.
func (s *Setting) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "" {
			return fmt.Errorf("line %d: empty parameter value", n.Line)
		}
		s.Scalar = n.Value
		return nil
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return fmt.Errorf("line %d: empty list", n.Line)
		}
		if n.Content[0].Kind == yaml.ScalarNode {
			for _, e := range n.Content {
				v, err := strconv.ParseFloat(e.Value, 64)
				if e.Kind != yaml.ScalarNode || err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
					return fmt.Errorf("line %d: a gradient holds finite numbers only; got %q", e.Line, e.Value)
				}
				s.Gradient = append(s.Gradient, v)
			}
			return nil
		}
		for _, e := range n.Content {
			if e.Kind != yaml.MappingNode {
				return fmt.Errorf("line %d: a conditional list holds {filter, value} maps", e.Line)
			}
			var c struct {
				Filter *string `yaml:"filter"`
				Value  *Setting
			}
			for i := 0; i+1 < len(e.Content); i += 2 {
				k, v := e.Content[i], e.Content[i+1]
				switch k.Value {
				case "filter":
					f := v.Value
					c.Filter = &f
				case "value":
					var vs Setting
					if err := v.Decode(&vs); err != nil {
						return err
					}
					if vs.Conditions != nil {
						return fmt.Errorf("line %d: conditions cannot nest", v.Line)
					}
					c.Value = &vs
				default:
					return fmt.Errorf("line %d: unknown key %q in a conditional value (want filter, value)", k.Line, k.Value)
				}
			}
			if c.Value == nil {
				return fmt.Errorf("line %d: conditional entry without value", e.Line)
			}
			cond := Condition{Value: *c.Value}
			if c.Filter != nil {
				cond.Filter = *c.Filter
			}
			s.Conditions = append(s.Conditions, cond)
		}
		return nil
	}
	return fmt.Errorf("line %d: a parameter value is a scalar, a list of numbers or a list of {filter, value}", n.Line)
}

// Eval returns the setting's value for a tensor with the given names (its
// ONNX name and its mergekit-style name, see Layers) at gradient position
// t ∈ [0, 1], as text; ok is false when no condition matches. A gradient
// of n points gives, with x = t·(n − 1), i = ⌊x⌋ and f = x − i,
// (1 − f)·g[i] + f·g[min(i+1, n−1)] (mergekit's interpolation).
func (s Setting) Eval(names []string, t float64) (string, bool) {
	switch {
	case s.Gradient != nil:
		g := s.Gradient
		x := t * float64(len(g)-1)
		i := int(x)
		i1 := min(len(g)-1, i+1)
		f := x - float64(i)
		return strconv.FormatFloat((1-f)*g[i]+f*g[i1], 'g', -1, 64), true
	case s.Conditions != nil:
		for _, c := range s.Conditions {
			if c.Filter == "" || c.Filter == "*" || matchesAny(names, c.Filter) {
				return c.Value.Eval(names, t)
			}
		}
		return "", false
	}
	return s.Scalar, true
}

func matchesAny(names []string, sub string) bool {
	for _, n := range names {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

// TensorSettings are the parameters that vary by tensor (mergekit's
// gradients and filters); Options.Tensor holds them.
type TensorSettings struct {
	// Global maps a global parameter's name to its setting.
	Global map[string]Setting
	// PerModel maps, for each model, a parameter name to its setting.
	PerModel []map[string]Setting
	// OwnScalars marks, for each model, the per-model parameters it set
	// to a scalar of its own (already in Options' per-model slices).
	OwnScalars []map[string]bool
}

// needsLayers reports whether some setting is a gradient.
func (ts *TensorSettings) needsLayers() bool {
	grad := func(s Setting) bool {
		if s.Gradient != nil {
			return true
		}
		for _, c := range s.Conditions {
			if c.Value.Gradient != nil {
				return true
			}
		}
		return false
	}
	for _, s := range ts.Global {
		if grad(s) {
			return true
		}
	}
	for _, m := range ts.PerModel {
		for _, s := range m {
			if grad(s) {
				return true
			}
		}
	}
	return false
}

// forTensor returns a copy of the validated options o with the settings
// evaluated for one tensor, validated again. Per-model settings win over
// global ones; a setting no condition matches leaves the parameter as o
// has it.
func (o *Options) forTensor(names []string, t float64, n int, haveBase bool) (*Options, error) {
	c := *o
	c.Weights = append([]float64(nil), o.Weights...)
	c.Densities = append([]float64(nil), o.Densities...)
	c.Mergekit.Gammas = append([]float64(nil), o.Mergekit.Gammas...)
	c.Mergekit.Epsilons = append([]float64(nil), o.Mergekit.Epsilons...)
	c.Tensor = nil
	ts := o.Tensor
	perModel := func(name string, i int, v float64) {
		switch name {
		case "weight":
			c.Weights[i] = v
		case "density":
			c.Densities[i] = v
		case "gamma":
			c.Mergekit.Gammas[i] = v
		case "epsilon":
			c.Mergekit.Epsilons[i] = v
		}
	}
	unmatched := func(name string) (string, error) {
		spec, err := paramSpec(o.Method, name)
		if err != nil {
			return "", err
		}
		if spec.Default == "" {
			return "", fmt.Errorf("%w: no condition of parameter %s matches this tensor, and it has no default", ErrOptions, name)
		}
		return spec.Default, nil
	}
	for name, s := range ts.Global {
		v, ok := s.Eval(names, t)
		if !ok {
			var err error
			if v, err = unmatched(name); err != nil {
				return nil, err
			}
		}
		if isPerModel(name) {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: parameter %s: %q is not a number", ErrOptions, name, v)
			}
			for i := 0; i < n; i++ {
				if _, own := ts.PerModel[i][name]; !own && !ts.ownScalar(i, name) {
					perModel(name, i, f)
				}
			}
			continue
		}
		if err := c.SetParam(name, v); err != nil {
			return nil, err
		}
	}
	for i, m := range ts.PerModel {
		for name, s := range m {
			v, ok := s.Eval(names, t)
			if !ok {
				var err error
				if v, err = unmatched(name); err != nil {
					return nil, err
				}
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: model %d parameter %s: %q is not a number", ErrOptions, i+1, name, v)
			}
			perModel(name, i, f)
		}
	}
	if err := c.Validate(n, haveBase); err != nil {
		return nil, err
	}
	return &c, nil
}

// ownScalar reports whether model i set name to a scalar of its own (the
// global setting must not override it).
func (ts *TensorSettings) ownScalar(i int, name string) bool {
	return i < len(ts.OwnScalars) && ts.OwnScalars[i][name]
}

func isPerModel(name string) bool {
	switch name {
	case "weight", "density", "gamma", "epsilon":
		return true
	}
	return false
}

// describe lists the parameters that vary by tensor, for provenance.
func (ts *TensorSettings) describe() string {
	var s []string
	for name := range ts.Global {
		s = append(s, name)
	}
	for i, m := range ts.PerModel {
		for name := range m {
			s = append(s, fmt.Sprintf("model%d.%s", i+1, name))
		}
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// first returns the first value the setting lists (a scalar, a gradient's
// first point, or the first condition's): a stand-in for checks that need
// one value before the tensors are known.
func (s Setting) first() string {
	switch {
	case s.Gradient != nil:
		return strconv.FormatFloat(s.Gradient[0], 'g', -1, 64)
	case s.Conditions != nil:
		return s.Conditions[0].Value.first()
	}
	return s.Scalar
}
