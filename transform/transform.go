// Package transform declares onnxpost's model transforms as values, in the
// spirit of golang.org/x/tools/go/analysis: a Transform has a Name, a Doc,
// typed parameters with defaults and validation, the inputs it needs
// (a base model, several models, calibration statistics) and a Run that
// returns a new model and a report without touching the models it is
// given.
//
// The package sits at the module root and imports only onnxio, so the
// algorithm packages (merge, quant, compress/sparsity, compress/lowrank)
// declare their own transforms next to their code, as analysis passes
// declare their Analyzer, and pipeline gathers them into the registry
// that recipes and the command line read. A package under pipeline/ would
// make every algorithm package import pipeline's tree, which imports them.
//
// # Parameters
//
// A Param declares one parameter with the name the command line and the
// recipes use (a recipe key is the flag without dashes). Values arrive as
// text (a flag) or as YAML values (a recipe); Param.Check accepts both and
// returns an error naming the parameter, the value and what is allowed.
// Command.Check validates a whole set of values against the transform the
// values select, before anything runs.
//
// # Invariants
//
// Run never modifies Input.Models or Input.Base: a transform whose
// algorithm edits a model in place clones it first (onnxio.Model.Clone).
// Every registered transform is checked for this by the registry's tests.
package transform

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Kind is the type of a parameter's value.
type Kind int

// The parameter kinds.
const (
	// Float is a finite floating-point number.
	Float Kind = iota + 1
	// Int is an integer.
	Int
	// Bool is true or false.
	Bool
	// String is free text (Validate may restrict it).
	String
	// Enum is one of Choices.
	Enum
	// Pattern is an N:M sparsity pattern; its Validate func (the
	// sparsity package's parser) says which are allowed.
	Pattern
	// List is a comma-separated list of Elem values (a YAML list in a
	// recipe); Choices, when set, restricts every element.
	List
)

// String returns the kind's name as the errors write it.
func (k Kind) String() string {
	switch k {
	case Float:
		return "number"
	case Int:
		return "integer"
	case Bool:
		return "boolean"
	case String:
		return "string"
	case Enum:
		return "choice"
	case Pattern:
		return "N:M pattern"
	case List:
		return "list"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Range bounds a Float or Int parameter (or each element of a List of
// them). A nil bound is open to infinity.
type Range struct {
	Min, Max *float64
	// MinOpen and MaxOpen exclude the bound itself.
	MinOpen, MaxOpen bool
}

// Between returns the range [lo, hi]; open marks which ends are excluded
// ("(]", "[)", "()" or "[]").
func Between(lo, hi float64, ends string) *Range {
	return &Range{Min: &lo, Max: &hi, MinOpen: strings.HasPrefix(ends, "("), MaxOpen: strings.HasSuffix(ends, ")")}
}

// AtLeast returns the range [lo, ∞).
func AtLeast(lo float64) *Range { return &Range{Min: &lo} }

// Above returns the range (lo, ∞).
func Above(lo float64) *Range { return &Range{Min: &lo, MinOpen: true} }

// Contains reports whether x lies in r.
func (r *Range) Contains(x float64) bool {
	if r == nil {
		return true
	}
	if r.Min != nil && (x < *r.Min || r.MinOpen && x == *r.Min) {
		return false
	}
	if r.Max != nil && (x > *r.Max || r.MaxOpen && x == *r.Max) {
		return false
	}
	return true
}

// String writes the range as an interval: "(0, 1]", ">= 1".
func (r *Range) String() string {
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	switch {
	case r == nil:
		return "any value"
	case r.Min != nil && r.Max != nil:
		lo, hi := "[", "]"
		if r.MinOpen {
			lo = "("
		}
		if r.MaxOpen {
			hi = ")"
		}
		return lo + g(*r.Min) + ", " + g(*r.Max) + hi
	case r.Min != nil:
		if r.MinOpen {
			return "> " + g(*r.Min)
		}
		return ">= " + g(*r.Min)
	case r.Max != nil:
		if r.MaxOpen {
			return "< " + g(*r.Max)
		}
		return "<= " + g(*r.Max)
	}
	return "any value"
}

// Param declares one parameter of a transform.
type Param struct {
	// Name is the flag name without dashes, also the recipe key.
	Name string
	// Doc is the flag's usage text; a back-quoted word in it names the
	// value in help output (urfave/cli's convention).
	Doc string
	// Kind is the value's type.
	Kind Kind
	// Elem is the element kind of a List (Float, Int or String; String
	// when zero).
	Elem Kind
	// Default is the default value as text ("" for none: the parameter is
	// unset unless given).
	Default string
	// Range bounds Float and Int values (and List elements).
	Range *Range
	// Choices are the allowed values of an Enum (and List elements).
	Choices []string
	// Validate, when set, checks the value's text after the checks of its
	// kind; its error says what is allowed.
	Validate func(text string) error
	// Repeated marks a List whose flag is given once per element
	// (a flag repeated, a=1 then b=2) rather than comma-separated.
	Repeated bool
}

// ErrValue reports a parameter value that is not allowed. Errors from
// Check and Command.Check wrap it.
var ErrValue = errors.New("invalid value")

// Text converts a value as a recipe gives it (string, number, bool, list)
// to the text the command line would give.
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = Text(e)
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v)
}

// Canonical returns v as text, with an Enum value (or the elements of a
// List of them) spelled as its choice is: choices match regardless of
// case, as the command line always accepted ("INT4" is int4).
func (p *Param) Canonical(v any) string {
	text := Text(v)
	canon := func(s string) string {
		for _, c := range p.Choices {
			if strings.EqualFold(strings.TrimSpace(s), c) {
				return c
			}
		}
		return s
	}
	switch {
	case p.Kind == Enum:
		return canon(text)
	case p.Kind == List && p.elem() == Enum:
		parts := strings.Split(text, ",")
		for i := range parts {
			parts[i] = canon(parts[i])
		}
		return strings.Join(parts, ",")
	}
	return text
}

// Check validates v (text, or a value as a recipe gives it) and returns
// an error wrapping ErrValue that names the parameter, the value and what
// is allowed.
func (p *Param) Check(v any) error {
	text := Text(v)
	if err := p.check(text, v); err != nil {
		return fmt.Errorf("%w: %s = %s: %v", ErrValue, p.Name, strconv.Quote(text), err)
	}
	return nil
}

func (p *Param) check(text string, v any) error {
	switch p.Kind {
	case Bool:
		if _, ok := v.(bool); ok {
			break
		}
		if _, err := strconv.ParseBool(strings.TrimSpace(text)); err != nil {
			return errors.New("want true or false")
		}
	case List:
		if _, isMap := v.(map[string]any); isMap {
			return errors.New("want a list")
		}
		if strings.TrimSpace(text) == "" {
			return errors.New("want a non-empty list")
		}
		for _, e := range strings.Split(text, ",") {
			if err := p.checkScalar(p.elem(), strings.TrimSpace(e)); err != nil {
				return fmt.Errorf("element %q: %v", strings.TrimSpace(e), err)
			}
		}
	default:
		if _, isList := v.([]any); isList {
			return fmt.Errorf("want one %s, not a list", p.Kind)
		}
		if _, isMap := v.(map[string]any); isMap {
			return fmt.Errorf("want one %s, not a mapping", p.Kind)
		}
		if err := p.checkScalar(p.Kind, strings.TrimSpace(text)); err != nil {
			return err
		}
	}
	if p.Validate != nil {
		return p.Validate(text)
	}
	return nil
}

func (p *Param) elem() Kind {
	if p.Elem == 0 {
		if p.Choices != nil {
			return Enum
		}
		return String
	}
	return p.Elem
}

func (p *Param) checkScalar(k Kind, s string) error {
	switch k {
	case Float:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("want a finite number in %s", p.Range)
		}
		if !p.Range.Contains(x) {
			return fmt.Errorf("want a number in %s", p.Range)
		}
	case Int:
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			if f, ferr := strconv.ParseFloat(s, 64); ferr == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				x, err = int64(f), nil
			}
		}
		if err != nil {
			return fmt.Errorf("want an integer in %s", p.Range)
		}
		if !p.Range.Contains(float64(x)) {
			return fmt.Errorf("want an integer in %s", p.Range)
		}
	case Enum:
		for _, c := range p.Choices {
			if strings.EqualFold(s, c) {
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(p.Choices, ", "))
	}
	return nil
}

// Regexp is a Validate func for parameters holding a regular expression.
func Regexp(s string) error {
	_, err := regexp.Compile(s)
	return err
}

// Need is what a transform needs besides the model it transforms.
type Need uint

// The needs.
const (
	// NeedBase: a base model (Input.Base), e.g. the pre-trained model
	// task vectors are taken from.
	NeedBase Need = 1 << iota
	// NeedModels: several models (Input.Models), e.g. merging.
	NeedModels
	// NeedCalibration: calibration statistics (Input.Calibration) from
	// the model's activations on data.
	NeedCalibration
	// NeedData: a calibration data set (Input.Data), which the transform
	// runs the model on itself.
	NeedData
)

// String lists the needs: "base, calibration".
func (n Need) String() string {
	var s []string
	for _, x := range []struct {
		n    Need
		name string
	}{{NeedBase, "base"}, {NeedModels, "models"}, {NeedCalibration, "calibration"}, {NeedData, "data"}} {
		if n&x.n != 0 {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ", ")
}

// Input is what Run receives. Run reads it and never modifies the models
// it holds.
type Input struct {
	// Models are the models transformed: one, or several for a merge.
	Models []*onnxio.Model
	// Base is the base model of transforms that need one.
	Base *onnxio.Model
	// Args are the validated parameter values, defaults filled in
	// (Transform.Bind).
	Args Args
	// Calibration holds the statistics a NeedCalibration transform reads
	// (the interface its package declares: quant.Calibration,
	// sparsity.Calibration...), computed on the first model.
	Calibration any
	// Data is the calibration data set of a NeedData transform (an
	// *evalharness.Dataset).
	Data any
	// Seed seeds the transform's random choices (random drops, the
	// randomized SVD).
	Seed int64
	// Options carries settings that are not parameters (progress
	// writers, random sources, a session configuration), typed by the
	// transform's package; nil for none.
	Options any
}

// As stores v in *dst when v holds a value of dst's type (an interface
// such as a package's calibration interface, whatever its name) and
// reports whether it did; nil v is not stored.
func As[T any](dst *T, v any) bool {
	t, ok := v.(T)
	if ok {
		*dst = t
	}
	return ok
}

// Transform is one model transform.
type Transform struct {
	// Name is "command/variant" (quantize/int8, merge/ties,
	// sparsify/wanda, search/bits).
	Name string
	// Doc is a one-paragraph description; its first sentence is the
	// summary.
	Doc string
	// Params are the declared parameters.
	Params []*Param
	// Needs lists what Run needs besides Input.Models[0].
	Needs Need
	// Check, when set, validates combinations of values (exactly one of
	// two parameters, a block size that must be a multiple of a
	// pattern's M...) once each value passed its own Param check; args
	// hold the defaults of what was not given. Bind and Command.Check
	// call it.
	Check func(args Args) error
	// Run transforms in.Models (one model unless Needs has NeedModels)
	// and returns a new model and the package's report. It must not
	// modify in.Models or in.Base.
	Run func(ctx context.Context, in Input) (*onnxio.Model, any, error)
}

// Param returns the declared parameter named name, or nil.
func (t *Transform) Param(name string) *Param {
	for _, p := range t.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Args are validated parameter values as text, by parameter name.
type Args map[string]string

// Has reports whether the parameter has a value (given or default).
func (a Args) Has(name string) bool { _, ok := a[name]; return ok }

// String returns the value of name ("" when unset).
func (a Args) String(name string) string { return a[name] }

// Float returns the value of name as a number (0 when unset).
func (a Args) Float(name string) float64 {
	x, _ := strconv.ParseFloat(strings.TrimSpace(a[name]), 64)
	return x
}

// Int returns the value of name as an integer (0 when unset).
func (a Args) Int(name string) int {
	s := strings.TrimSpace(a[name])
	x, err := strconv.Atoi(s)
	if err != nil {
		f, _ := strconv.ParseFloat(s, 64)
		x = int(f)
	}
	return x
}

// Bool returns the value of name as a boolean (false when unset).
func (a Args) Bool(name string) bool {
	b, _ := strconv.ParseBool(strings.TrimSpace(a[name]))
	return b
}

// List returns the elements of a List value (nil when unset).
func (a Args) List(name string) []string {
	s, ok := a[name]
	if !ok || s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// Regexp compiles the value of name (nil when unset or empty); the error
// names the parameter.
func (a Args) Regexp(name string) (*regexp.Regexp, error) {
	s := a[name]
	if s == "" {
		return nil, nil
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s = %q: %v", ErrValue, name, s, err)
	}
	return re, nil
}

// Bind validates values (by parameter name) against t's parameters and
// returns them as Args with the defaults of the parameters not given.
// Every problem is reported, sorted by parameter name; names t does not
// declare are errors.
func (t *Transform) Bind(values map[string]any) (Args, error) {
	args := Args{}
	for _, p := range t.Params {
		if p.Default != "" {
			args[p.Name] = p.Default
		}
	}
	var errs []error
	for _, k := range sortedKeys(values) {
		p := t.Param(k)
		if p == nil {
			errs = append(errs, fmt.Errorf("%w: %s has no parameter %q", ErrValue, t.Name, k))
			continue
		}
		if err := p.Check(values[k]); err != nil {
			errs = append(errs, err)
			continue
		}
		args[k] = p.Canonical(values[k])
	}
	if len(errs) == 0 && t.Check != nil {
		if err := t.Check(args); err != nil {
			errs = append(errs, fmt.Errorf("%w: %v", ErrValue, err))
		}
	}
	return args, errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
