package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/transform"
)

// ErrUsage marks an error in what a command or a recipe step was given:
// a value or a combination of values that is not allowed, a missing
// input, discovered before or while the command runs. The command line
// exits 2 for it (1 for other errors), in a recipe step as on its own.
var ErrUsage = errors.New("usage")

// usageError is an error that wraps ErrUsage without saying so in its
// text.
type usageError struct{ err error }

func (e usageError) Error() string   { return e.err.Error() }
func (e usageError) Unwrap() []error { return []error{ErrUsage, e.err} }

// Usage marks err as a usage error (errors.Is(err, ErrUsage)); its text
// is unchanged. nil stays nil.
func Usage(err error) error {
	if err == nil || errors.Is(err, ErrUsage) {
		return err
	}
	return usageError{err}
}

// Usagef is Usage(fmt.Errorf(format, args...)).
func Usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// Flags reads the options of a command: the command line's parsed flags
// (urfave/cli's *cli.Context has these methods) or a recipe step's keys
// (StepFlags). A name that is not set reads as its default.
type Flags interface {
	IsSet(name string) bool
	String(name string) string
	Bool(name string) bool
	Int(name string) int
	Int64(name string) int64
	Float64(name string) float64
	StringSlice(name string) []string
}

// flagKind is the type of a command's option that is not a declared
// transform parameter.
type flagKind int

const (
	flagString flagKind = iota
	flagBool
	flagInt
	flagFloat
)

// flagDecl declares an option of a command besides its transform
// parameters: its type and default as text (the command line's flag
// default; TestStepFlagsMatchCommandLine holds them equal).
type flagDecl struct {
	kind flagKind
	def  string
}

var (
	fString  = flagDecl{kind: flagString}
	fBool    = flagDecl{kind: flagBool}
	fInt     = flagDecl{kind: flagInt}
	fEP      = flagDecl{kind: flagString, def: "cpu"}
	fBatch64 = flagDecl{kind: flagInt, def: "64"}
)

// commonDecls are the options every transforming command has besides -o,
// report, gate, json, keep-rejected and ort-lib, which a recipe sets or
// refuses.
var commonDecls = map[string]flagDecl{"data": fString, "seed": fInt, "ep": fEP, "external-data": fBool, "allow-noop": fBool,
	"batch": fBatch64, "threads": fInt, "output-name": fString, "metrics": fString}

// commandDecls are the options of the commands a recipe step may name,
// besides their declared transform parameters and commonDecls (for the
// transforming ones).
var commandDecls = map[string]map[string]flagDecl{
	"merge": {"base": fString, "fisher": fString, "fisher-data": fString, "config": fString, "out-dir": fString,
		"progress": fBool, "align": fString, "calib": fString},
	"quantize": {"calib": fString},
	"sparsify": {"calib": fString, "quiet": fBool},
	"lowrank":  {"calib": fString},
	"search":   {"calib": fString, "cache-dir": {kind: flagString, def: DefaultCacheDir()}, "plots": fString, "baselines": fString},
	"soup": {"greedy": fBool, "metric": {kind: flagString, def: "accuracy"}, "include": fString, "exclude": fString,
		"progress": fBool},
	"fisher": {"data": fString, "samples": fInt, "seed": fInt, "max-examples": fInt, "batch": {kind: flagInt, def: "16"},
		"logits": fString, "output-name": fString, "mode": fString, "ep": fEP, "threads": fInt},
	"eval": {"data": fString, "ref": fString, "metrics": fString, "batch": fBatch64, "ep": fEP, "threads": fInt,
		"output-name": fString, "save-outputs": fString, "warmup": {kind: flagInt, def: "3"}, "shard": fString,
		"timed-runs": {kind: flagInt, def: "20"}},
}

// transforming are the commands that take commonDecls.
var transforming = map[string]bool{"merge": true, "quantize": true, "sparsify": true, "lowrank": true, "search": true, "soup": true}

// aliases maps a command's option aliases to their names.
var aliases = map[string]map[string]string{"fisher": {"output-name": "logits"}}

// StepCommands lists the commands a recipe step may name.
func StepCommands() []string { return slices.Sorted(maps.Keys(commandDecls)) }

// stepFlags is a recipe step's keys read as a command's flags.
type stepFlags struct {
	command string
	values  map[string]any
	params  *transform.Command
}

// StepFlags returns the keys of a recipe step of command as the command's
// flags: values as the recipe gives them (strings, numbers, booleans,
// lists), defaults as the command line's. Values are checked by
// CheckStepFlags.
func StepFlags(command string, values map[string]any) Flags {
	return &stepFlags{command: command, values: values, params: CommandNamed(command)}
}

// IsSet reports whether the step sets name.
func (f *stepFlags) IsSet(name string) bool {
	_, ok := f.values[name]
	if !ok {
		if a, ok2 := aliases[f.command]; ok2 {
			for alias, n := range a {
				if n == name {
					_, ok = f.values[alias]
				}
			}
		}
	}
	return ok
}

// text returns name's value as text, or its default.
func (f *stepFlags) text(name string) string {
	if v, ok := f.values[name]; ok {
		return transform.Text(v)
	}
	if a, ok := aliases[f.command]; ok {
		for alias, n := range a {
			if n == name {
				if v, ok := f.values[alias]; ok {
					return transform.Text(v)
				}
			}
		}
	}
	if f.params != nil {
		if p := f.params.Param(name); p != nil {
			return p.Default
		}
	}
	if d, ok := commandDecls[f.command][name]; ok {
		return d.def
	}
	if transforming[f.command] {
		return commonDecls[name].def
	}
	return ""
}

// String returns name's value as text.
func (f *stepFlags) String(name string) string { return f.text(name) }

// Bool returns name's value as a boolean (false when unset or malformed;
// CheckStepFlags refuses malformed values).
func (f *stepFlags) Bool(name string) bool { b, _ := strconv.ParseBool(f.text(name)); return b }

// Int returns name's value as an int.
func (f *stepFlags) Int(name string) int { n, _ := strconv.Atoi(f.text(name)); return n }

// Int64 returns name's value as an int64.
func (f *stepFlags) Int64(name string) int64 {
	n, _ := strconv.ParseInt(f.text(name), 10, 64)
	return n
}

// Float64 returns name's value as a float64.
func (f *stepFlags) Float64(name string) float64 {
	v, _ := strconv.ParseFloat(f.text(name), 64)
	return v
}

// StringSlice returns name's value as a list: the elements of a YAML
// list, or the comma-separated parts of a string.
func (f *stepFlags) StringSlice(name string) []string {
	v, ok := f.values[name]
	if !ok {
		return nil
	}
	if xs, ok := v.([]any); ok {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = transform.Text(x)
		}
		return out
	}
	return strings.Split(transform.Text(v), ",")
}

// CheckStepFlags checks the values a recipe step gives its command's
// options that are not transform parameters (those are checked by their
// declarations): integers, numbers and booleans must parse, ep must be cpu
// or cuda, metrics must name known metrics. The error names the key, the
// value and what is allowed.
func CheckStepFlags(command string, values map[string]any) error {
	var errs []string
	c := CommandNamed(command)
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if c != nil && c.Param(k) != nil {
			continue
		}
		d, ok := commandDecls[command][k]
		if !ok && transforming[command] {
			d, ok = commonDecls[k]
		}
		if !ok {
			continue
		}
		text := transform.Text(values[k])
		var msg string
		switch d.kind {
		case flagBool:
			if _, isBool := values[k].(bool); !isBool {
				if _, err := strconv.ParseBool(text); err != nil {
					msg = "want true or false"
				}
			}
		case flagInt:
			if _, err := strconv.ParseInt(text, 10, 64); err != nil {
				msg = "want an integer"
			}
		case flagFloat:
			if _, err := strconv.ParseFloat(text, 64); err != nil {
				msg = "want a number"
			}
		case flagString:
			if _, isList := values[k].([]any); isList && k != "fisher" && k != "fisher-data" {
				msg = "want a single value"
			}
		}
		if msg == "" {
			switch k {
			case "ep":
				if e := strings.ToLower(text); e != "cpu" && e != "cuda" {
					msg = "want cpu or cuda"
				}
			case "metrics":
				if _, err := evalharness.ParseMetrics(text); err != nil {
					msg = err.Error()
				}
			}
		}
		if msg != "" {
			errs = append(errs, fmt.Sprintf("%s = %s: %s", k, strconv.Quote(text), msg))
		}
	}
	if len(errs) > 0 {
		return Usage(errors.New(strings.Join(errs, "\n")))
	}
	return nil
}

// SessionFromFlags returns the ONNX Runtime session options of the flags
// ep, threads and ort-lib (a usage error for an execution provider other
// than cpu and cuda, or threads out of range).
func SessionFromFlags(f Flags) (evalharness.SessionOptions, error) {
	ep := strings.ToLower(f.String("ep"))
	if ep != "cpu" && ep != "cuda" && ep != "" {
		return evalharness.SessionOptions{}, Usagef("ep must be cpu or cuda, got %q", f.String("ep"))
	}
	if err := evalharness.CheckThreads(f.Int("threads")); err != nil {
		return evalharness.SessionOptions{}, Usage(err)
	}
	return evalharness.SessionOptions{EP: ep, Threads: f.Int("threads"), Library: f.String("ort-lib")}, nil
}

// StepOption returns the type ("string", "bool", "int" or "float") and
// default (as text) of option name of command as a recipe step reads it,
// besides the command's declared transform parameters; ok is false when
// a step of command has no such option. The command line's flags have
// the same types and defaults.
func StepOption(command, name string) (kind, def string, ok bool) {
	d, ok := commandDecls[command][name]
	if !ok && transforming[command] {
		d, ok = commonDecls[name]
	}
	if !ok {
		return "", "", false
	}
	return [...]string{flagString: "string", flagBool: "bool", flagInt: "int", flagFloat: "float"}[d.kind], d.def, true
}

// ParamValues returns the declared parameters of cmd that f sets, as
// text (a repeated list's elements joined by commas): what cmd.Check
// validates.
func ParamValues(f Flags, cmd *transform.Command) map[string]any {
	values := map[string]any{}
	for _, p := range cmd.Params() {
		if !f.IsSet(p.Name) {
			continue
		}
		if p.Kind == transform.List && p.Repeated {
			values[p.Name] = strings.Join(f.StringSlice(p.Name), ",")
			continue
		}
		values[p.Name] = f.String(p.Name)
	}
	return values
}
