package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/jsonout"
	"github.com/onnxpost/onnxpost/internal/safefs"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/release"
	"github.com/onnxpost/onnxpost/transform"
)

// Recipe is a chain of onnxpost steps with gates, read from YAML:
//
//	name: demo
//	seed: 0
//	data: models/data/digits_union_test.npz   # default data of every step
//	output: out/final.onnx
//	report: out/recipe.json
//	steps:
//	  - merge: {method: ties, base: models/zoo/mlp/base.onnx, density: 0.3,
//	            inputs: [models/zoo/mlp/ft_low.onnx, models/zoo/mlp/ft_high.onnx]}
//	    gate: "accuracy>=0.85"
//	  - search: {target: 0.5, calib: models/data/digits_union_val.npz}
//	    gate: "accuracy_drop<=0.05"
//	  - quantize: {weights: int8}
//	ref: models/zoo/mlp/base.onnx       # the final gate compares with it
//	gate: "accuracy_drop<=0.05"         # checked on the output, on data
//	output-report: out/final.json       # the output's own report
//
// Each step names one command; its keys are that command's flags (without
// dashes), plus "inputs" for the positional models. A step without inputs
// takes the previous step's output. Unknown keys anywhere are errors.
//
// The last step's model is committed by release.Commit, as the CLI
// commits a command's output: evaluated on data against ref when gate or
// output-report is set, gated by gate, written to output only when the
// gate passes, with the chain's provenance in its metadata (the tool
// version, the SHA-256 of every model the recipe reads, and what each
// transform records), and its report at output-report. The recipe file
// itself is not recorded in the model, so a Go program that runs the same
// chain through the library writes the same bytes; the recipe's SHA-256
// and canonical form go into the recipe report.
//
// # Trust
//
// A recipe is data that may come from someone else. Paths it reads
// (inputs, data, base, calib, ...) resolve against the recipe's folder.
// Paths it writes (output, report and the .md/.png beside it, workdir, and
// the write flags of steps: save-outputs, plots, baselines, cache-dir)
// resolve against the write folder, which is the recipe's folder or the
// folder given by WithOutDir, and must stay inside it: absolute paths,
// ".." that leaves it and symbolic links that point outside are refused
// at validation (safefs.WritePath), before anything runs. A recipe cannot
// set process-level options: ort-lib (which native library is loaded) is
// refused by name, and threads above evalharness.MaxThreads is refused.
type Recipe struct {
	Name         string
	Seed         *int64
	Data         string
	WorkDir      string
	Output       string
	Report       string
	ExternalData bool
	Steps        []Step
	// Ref is the reference model of the final gate ("" for none).
	Ref string
	// Gate is the final gate, checked on the output (needs Data).
	Gate string
	// OutputReport is the path of the output's own report (JSON, with
	// Markdown beside it), as release.Commit writes it.
	OutputReport string
	// Source is the recipe's text as read. It is not written anywhere:
	// the recipe report records its SHA-256 and Canonical.
	Source []byte
	// Dir is the recipe file's folder; relative paths resolve against it.
	Dir string
	// OutDir is the folder written paths resolve against (Dir when no
	// WithOutDir option was given).
	OutDir string

	// Session opens the ONNX Runtime sessions of the final commit and
	// names the library of the in-process steps'; set by the caller (a
	// recipe cannot choose the native library).
	Session evalharness.SessionOptions
	// Log receives a line per in-process step (nil: nothing).
	Log io.Writer

	outputPath, reportPath, workPath, outputReportPath string
	canonical                                          []byte
}

// Step is one command of a recipe.
type Step struct {
	Name    string
	Command string
	Args    map[string]any
	Inputs  []string
	Gate    string
	Data    string

	// writes maps the step's write flags to their resolved paths.
	writes map[string]string
}

// RecipeOption configures ParseRecipe.
type RecipeOption func(*Recipe)

// WithOutDir makes the recipe write inside dir (the CLI's out-dir flag)
// instead of the recipe's folder. dir must exist.
func WithOutDir(dir string) RecipeOption {
	return func(r *Recipe) {
		if dir != "" {
			r.OutDir = dir
		}
	}
}

// ErrProcessOption reports a recipe or config key that would change the
// process itself (which native library is loaded, how many threads run):
// those come from the command line or the environment only.
var ErrProcessOption = errors.New("a recipe cannot set process-level options")

// stepWriteFlags are the command flags that name a path the command
// writes; a recipe step's value is resolved as a write path.
var stepWriteFlags = map[string]bool{"save-outputs": true, "plots": true, "baselines": true, "cache-dir": true}

// recipeSetFlags are set by the recipe itself, never by a step.
var recipeSetFlags = map[string]bool{"o": true, "output": true, "report": true, "json": true, "gate": true, "keep-rejected": true}

// processKey returns why key may not be set by a recipe, or "".
func processKey(key string, v *yaml.Node) string {
	switch key {
	case "ort-lib":
		return fmt.Sprintf("%v: %q chooses the native ONNX Runtime library; the program that runs the recipe passes the library's path, or set %s", ErrProcessOption, key, evalharness.LibraryEnv)
	case "threads":
		n, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			return fmt.Sprintf("threads %q is not an integer", v.Value)
		}
		if err := evalharness.CheckThreads(n); err != nil {
			return fmt.Sprintf("%v: %v", ErrProcessOption, err)
		}
	}
	return ""
}

// FlagSpec tells the recipe validator which flags a command has and which
// of them are boolean (take no value).
type FlagSpec func(command string) (flags map[string]bool, ok bool)

var recipeKeys = map[string]bool{"name": true, "seed": true, "data": true, "workdir": true, "output": true, "report": true, "external-data": true, "steps": true,
	"ref": true, "gate": true, "output-report": true}

// ParseRecipe parses and validates a recipe read from a file in dir. spec
// says which commands and flags exist; every problem found is reported in
// one error. Nothing is written.
func ParseRecipe(src []byte, dir string, spec FlagSpec, opts ...RecipeOption) (*Recipe, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("recipe: the file must be a YAML mapping with a steps list")
	}
	r := &Recipe{Source: src, Dir: dir, OutDir: dir}
	for _, o := range opts {
		o(r)
	}
	var errs []string
	bad := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...)))
	}
	top := root.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		switch k.Value {
		case "name":
			r.Name = v.Value
		case "seed":
			s, err := strconv.ParseInt(v.Value, 10, 64)
			if err != nil {
				bad(v, "seed %q is not an integer", v.Value)
			}
			r.Seed = &s
		case "data":
			r.Data = v.Value
		case "workdir":
			r.WorkDir = v.Value
		case "output":
			r.Output = v.Value
		case "report":
			r.Report = v.Value
		case "external-data":
			r.ExternalData = v.Value == "true"
		case "ref":
			r.Ref = v.Value
		case "gate":
			r.Gate = v.Value
			if _, err := evalharness.ParseGate(v.Value); err != nil {
				bad(v, "gate: %v", err)
			}
		case "output-report":
			r.OutputReport = v.Value
		case "steps":
			if v.Kind != yaml.SequenceNode {
				bad(v, "steps must be a list")
				continue
			}
			for _, sn := range v.Content {
				st, serrs := parseStep(sn, spec, len(r.Steps)+1)
				errs = append(errs, serrs...)
				r.Steps = append(r.Steps, st)
			}
		default:
			if why := processKey(k.Value, v); why != "" {
				bad(k, "%s", why)
				continue
			}
			bad(k, "unknown key %q (known: %s)", k.Value, keysOf(recipeKeys))
		}
	}
	if len(r.Steps) == 0 {
		errs = append(errs, "the recipe has no steps")
	} else if _, config := r.Steps[0].Args["config"]; len(r.Steps[0].Inputs) == 0 && !(r.Steps[0].Command == "merge" && config) {
		errs = append(errs, fmt.Sprintf("step 1 (%s) needs inputs: the models it starts from", r.Steps[0].Command))
	}
	if r.Output == "" {
		errs = append(errs, "the recipe needs an output path")
	}
	// files must exist before anything runs
	check := func(what, p string) {
		if p == "" {
			return
		}
		if _, err := os.Stat(r.Path(p)); err != nil {
			errs = append(errs, fmt.Sprintf("%s %s: %v", what, p, err))
		}
	}
	check("data", r.Data)
	check("ref", r.Ref)
	if r.Gate != "" && r.Data == "" {
		errs = append(errs, "the recipe's gate needs data to evaluate the output on")
	}
	for i, s := range r.Steps {
		for _, in := range s.Inputs {
			check(fmt.Sprintf("step %d input", i+1), in)
		}
		check(fmt.Sprintf("step %d data", i+1), s.Data)
		for _, k := range []string{"base", "calib", "data", "ref", "config"} {
			if v, ok := s.Args[k].(string); ok {
				check(fmt.Sprintf("step %d %s", i+1, k), v)
			}
		}
		if s.Gate != "" && s.Data == "" && r.Data == "" {
			errs = append(errs, fmt.Sprintf("step %d has a gate but no data to evaluate it on", i+1))
		}
	}
	// the in-process steps' combinations (calib given when needed and only
	// then) and the values of their options, when each value passed
	if len(errs) == 0 {
		for i := range r.Steps {
			if !r.InProcess(i) {
				continue
			}
			err := CheckStepFlags(r.Steps[i].Command, r.Steps[i].Args)
			if err == nil && !r.viaTransform(i) {
				err = r.checkCommandStep(i)
			}
			if err == nil {
				_, err = r.plan(i)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("step %d (%s): %v", i+1, r.Steps[i].Command, err))
			}
		}
	}
	// everything written must stay inside the write folder
	write := func(key, p string) string {
		if p == "" {
			return ""
		}
		full, err := safefs.WritePath(r.OutDir, p)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", key, err))
		}
		return full
	}
	r.outputPath = write("output", r.Output)
	r.workPath = write("workdir", r.WorkDir)
	if r.Report != "" {
		n := len(errs)
		r.reportPath = write("report", r.Report)
		if len(errs) == n { // the siblings only when the report itself is fine
			stem := strings.TrimSuffix(r.Report, filepath.Ext(r.Report))
			write("report (its Markdown)", stem+".md")
			write("report (its plot)", stem+".png")
		}
	}
	if r.OutputReport != "" {
		n := len(errs)
		r.outputReportPath = write("output-report", r.OutputReport)
		if len(errs) == n {
			write("output-report (its Markdown)", release.MarkdownPath(r.OutputReport))
		}
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		for _, k := range slices.Sorted(maps.Keys(s.Args)) {
			if !stepWriteFlags[k] {
				continue
			}
			v, ok := s.Args[k].(string)
			if !ok {
				errs = append(errs, fmt.Sprintf("step %d %s: a path is a string", i+1, k))
				continue
			}
			if s.writes == nil {
				s.writes = map[string]string{}
			}
			s.writes[k] = write(fmt.Sprintf("step %d %s", i+1, k), v)
		}
	}
	if c, err := r.encodeCanonical(); err != nil {
		errs = append(errs, fmt.Sprintf("the recipe cannot be recorded: %v", err))
	} else {
		r.canonical = c
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("recipe: %d problem(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	return r, nil
}

var stepKeys = map[string]bool{"name": true, "gate": true, "data": true}

// parseStep parses step number i (from 1). Besides the key names (spec),
// the values of a registered command's parameters (Commands) are checked
// through their declarations: a bad method, density, pattern or weight
// type fails here, before any step runs.
func parseStep(n *yaml.Node, spec FlagSpec, i int) (Step, []string) {
	var st Step
	var errs []string
	bad := func(at *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("line %d: %s", at.Line, fmt.Sprintf(format, args...)))
	}
	if n.Kind != yaml.MappingNode {
		bad(n, "a step must be a mapping like {merge: {...}, gate: ...}")
		return st, errs
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			st.Name = v.Value
		case "gate":
			st.Gate = v.Value
		case "data":
			st.Data = v.Value
		default:
			flags, ok := spec(k.Value)
			if !ok {
				bad(k, "unknown key %q: a step has name, gate, data and one command (%s)", k.Value, strings.Join(StepCommands(), ", "))
				continue
			}
			if st.Command != "" {
				bad(k, "a step runs one command; it names %q and %q", st.Command, k.Value)
				continue
			}
			st.Command = k.Value
			st.Args = map[string]any{}
			if v.Kind != yaml.MappingNode && !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
				bad(v, "%s: its keys must be a mapping", k.Value)
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				fk, fv := v.Content[j], v.Content[j+1]
				if fk.Value == "inputs" {
					if err := fv.Decode(&st.Inputs); err != nil {
						bad(fv, "inputs must be a list of model paths")
					}
					continue
				}
				if recipeSetFlags[fk.Value] {
					bad(fk, "%s: %q is set by the recipe, not by a step", k.Value, fk.Value)
					continue
				}
				if why := processKey(fk.Value, fv); why != "" {
					bad(fk, "%s: %s", k.Value, why)
					continue
				}
				if _, ok := flags[fk.Value]; !ok {
					bad(fk, "%s has no key %q", k.Value, fk.Value)
					continue
				}
				var val any
				if err := fv.Decode(&val); err != nil {
					bad(fv, "%s.%s: %v", k.Value, fk.Value, err)
					continue
				}
				st.Args[fk.Value] = val
			}
		}
	}
	if st.Command == "" {
		bad(n, "the step names no command")
	}
	if len(errs) == 0 {
		if err := checkStepValues(st); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				bad(n, "step %d (%s): %s", i, st.Command, strings.TrimPrefix(line, transform.ErrValue.Error()+": "))
			}
		}
	}
	return st, errs
}

// checkStepValues checks the step's values through the declared
// parameters of its command (nothing for commands outside the registry).
// A merge whose method comes from its config file has each value checked
// by the command's declaration, without a method to choose by.
func checkStepValues(st Step) error {
	c := CommandNamed(st.Command)
	if c == nil {
		return nil
	}
	if _, hasMethod := st.Args["method"]; st.Command == "merge" && !hasMethod {
		if _, hasConfig := st.Args["config"]; hasConfig {
			return c.CheckValues(st.Args)
		}
	}
	_, _, err := c.Check(st.Args)
	return err
}

func keysOf(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// Path resolves p, a path the recipe reads, against the recipe's folder.
func (r *Recipe) Path(p string) string { return safefs.ReadPath(r.Dir, p) }

// OutputPath returns the validated path the final model is written to.
func (r *Recipe) OutputPath() string { return r.outputPath }

// ReportPath returns the validated path of the JSON report ("" for none).
func (r *Recipe) ReportPath() string { return r.reportPath }

// canonicalRecipe is the recorded form of a recipe: only validated keys,
// paths as written in the recipe, in a fixed order.
type canonicalRecipe struct {
	Name         string          `json:"name,omitempty"`
	Seed         *int64          `json:"seed,omitempty"`
	Data         string          `json:"data,omitempty"`
	WorkDir      string          `json:"workdir,omitempty"`
	Output       string          `json:"output"`
	Report       string          `json:"report,omitempty"`
	ExternalData bool            `json:"external-data,omitempty"`
	Steps        []canonicalStep `json:"steps"`
	Ref          string          `json:"ref,omitempty"`
	Gate         string          `json:"gate,omitempty"`
	OutputReport string          `json:"output-report,omitempty"`
}

type canonicalStep struct {
	Name    string         `json:"name,omitempty"`
	Command string         `json:"command"`
	Args    map[string]any `json:"args,omitempty"`
	Inputs  []string       `json:"inputs,omitempty"`
	Gate    string         `json:"gate,omitempty"`
	Data    string         `json:"data,omitempty"`
}

func (r *Recipe) encodeCanonical() ([]byte, error) {
	c := canonicalRecipe{Name: r.Name, Seed: r.Seed, Data: r.Data, WorkDir: r.WorkDir, Output: r.Output,
		Report: r.Report, ExternalData: r.ExternalData, Steps: []canonicalStep{}, Ref: r.Ref, Gate: r.Gate, OutputReport: r.OutputReport}
	for _, s := range r.Steps {
		args := map[string]any{}
		for k, v := range s.Args {
			args[k] = jsonable(v)
		}
		c.Steps = append(c.Steps, canonicalStep{Name: s.Name, Command: s.Command, Args: args, Inputs: s.Inputs, Gate: s.Gate, Data: s.Data})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonable converts YAML-decoded values (maps with non-string keys) to
// values encoding/json accepts.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	}
	return v
}

// Canonical returns the recipe as recorded in the recipe report (key
// "canonical"): compact JSON of the parsed, validated recipe (name, seed,
// data, workdir, output, report, external-data, ref, gate, output-report,
// and each step's command, flags, inputs, gate and data), with paths as
// written in the recipe and map keys sorted. The recipe's own text is not
// recorded: it may hold comments, anchors, odd bytes or secrets that were
// never validated, and the same recipe written two ways would record two
// texts. Its SHA-256 (the report's "recipe_sha256") still identifies the
// exact file.
func (r *Recipe) Canonical() []byte { return r.canonical }

// StepRunner runs one command with CLI-style arguments (command name
// first) and returns the JSON result it reported. A failed gate is
// returned as an error.
type StepRunner func(ctx context.Context, args []string) (map[string]any, error)

// StepResult is one step's outcome in a recipe report.
type StepResult struct {
	Step    int            `json:"step"`
	Name    string         `json:"name"`
	Command string         `json:"command"`
	Args    []string       `json:"args"`
	Output  string         `json:"output"`
	Result  map[string]any `json:"result,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// RecipeReport is the JSON report of a recipe run.
type RecipeReport struct {
	Recipe  string       `json:"recipe"`
	Version string       `json:"version"`
	Steps   []StepResult `json:"steps"`
	Output  string       `json:"output"`
	Passed  bool         `json:"passed"`
	Error   string       `json:"error,omitempty"`
	// RecipeSHA256 is the SHA-256 of the recipe file as read.
	RecipeSHA256 string `json:"recipe_sha256,omitempty"`
	// Canonical is the validated recipe (Recipe.Canonical).
	Canonical json.RawMessage `json:"canonical,omitempty"`
	// Final is the output's report (release.Report's JSON), when the
	// final commit ran.
	Final json.RawMessage `json:"final,omitempty"`
	// Cancelled is set when the run stopped because its context was
	// cancelled (SIGINT, SIGTERM); Error then starts with "cancelled".
	Cancelled bool `json:"cancelled,omitempty"`
}

// Args builds the command line of step i: flags from the step, the recipe's
// defaults (seed, data), the step's output path, then the inputs.
func (r *Recipe) Args(i int, input, out, report string) []string {
	s := r.Steps[i]
	args := []string{s.Command}
	keys := make([]string, 0, len(s.Args))
	for k := range s.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pathFlags := map[string]bool{"base": true, "calib": true, "data": true, "ref": true, "config": true, "fisher-data": true}
	for _, k := range keys {
		v := s.Args[k]
		switch x := v.(type) {
		case bool:
			// false is written out: a flag whose default is true
			// (quantize's per-channel) must see it
			if x {
				args = append(args, "--"+k)
			} else {
				args = append(args, "--"+k+"=false")
			}
			continue
		case []any:
			parts := make([]string, len(x))
			for j, p := range x {
				parts[j] = fmt.Sprint(p)
				if k == "fisher" {
					parts[j] = r.Path(parts[j])
				}
			}
			args = append(args, "--"+k, strings.Join(parts, ","))
			continue
		}
		val := fmt.Sprint(v)
		if pathFlags[k] {
			val = r.Path(val)
		}
		if w, ok := s.writes[k]; ok {
			val = w
		}
		args = append(args, "--"+k, val)
	}
	if _, ok := s.Args["seed"]; !ok && r.Seed != nil {
		args = append(args, "--seed", strconv.FormatInt(*r.Seed, 10))
	}
	data := s.Data
	if data == "" {
		data = r.Data
	}
	if _, ok := s.Args["data"]; !ok && data != "" {
		args = append(args, "--data", r.Path(data))
	}
	if s.Gate != "" {
		args = append(args, "--gate", s.Gate)
	}
	args = append(args, "-o", out, "--report", report)
	if len(s.Inputs) > 0 {
		for _, in := range s.Inputs {
			args = append(args, r.Path(in))
		}
	} else {
		args = append(args, input)
	}
	return args
}

// Run executes the recipe's steps in order, stopping at the first error
// or failed gate, then commits the last step's model (release.Commit).
//
// Every step of a command the library knows (StepCommands) runs in this
// process (InProcess), the model passed from step to step in memory, and
// is planned before the first one runs. Steps of merge, quantize,
// sparsify and lowrank whose keys their transforms take run through the
// transform registry (the transform chosen and its values bound, a
// missing or unused calib refused, at planning); the others (search,
// soup, fisher, eval, and merges with a config, Fisher files or data, or
// an alignment) through the entry points their commands call (Eval,
// Fisher, Soup, Search, MergeSpecFromFlags...), reading the step's keys
// as the command's flags (StepFlags). calib and data are loaded from the
// recipe's folder with only the arrays the model reads
// (evalharness.LoadDatasetFor, its size budget); a step that makes a
// model and has data is evaluated against its input (a merge: against
// its base, else its first model) and gated by release.Evaluate, which
// writes nothing. A step writes its model (stepNN-COMMAND.onnx) and
// result (stepNN-COMMAND.json) only when the recipe sets workdir. A bad
// value or a missing input found while a step runs is an error wrapping
// ErrUsage, a failed gate one wrapping release.ErrGateFailed.
//
// A step of a command the library does not know (one the recipe's
// FlagSpec adds) runs through run with files: the previous model is
// written to the work folder (workdir, or a temporary folder removed
// afterwards) when it is only in memory, and the step's output is read
// back; run may be nil when there are no such steps.
//
// The report is written in every case (when Report is set), also when
// ctx is cancelled: the report then says so.
func (r *Recipe) Run(ctx context.Context, run StepRunner, version string) (*RecipeReport, error) {
	sum := sha256.Sum256(r.Source)
	rep := &RecipeReport{Recipe: r.Name, Version: version, RecipeSHA256: hex.EncodeToString(sum[:]), Canonical: r.canonical}
	// the work folder: workdir, or a temporary folder made when a step
	// needs a file
	work := r.workPath
	if r.WorkDir != "" {
		if err := os.MkdirAll(work, 0o755); err != nil {
			return rep, err
		}
	}
	defer func() {
		if r.WorkDir == "" && work != "" {
			os.RemoveAll(work)
		}
	}()
	workDir := func() (string, error) {
		if work != "" {
			return work, nil
		}
		d, err := os.MkdirTemp("", "onnxpost-recipe-*")
		if err != nil {
			return "", err
		}
		work = d
		return d, nil
	}
	// The report's files are prepared before the output is committed, so
	// a report that cannot be written leaves no output behind.
	var pending []*safefs.Pending
	prepare := func() error {
		if r.reportPath == "" || pending != nil {
			return nil
		}
		stem := strings.TrimSuffix(r.reportPath, filepath.Ext(r.reportPath))
		for _, p := range []string{r.reportPath, stem + ".md"} {
			f, err := safefs.Prepare(p)
			if err != nil {
				for _, q := range pending {
					q.Abort()
				}
				pending = nil
				return fmt.Errorf("writing the report: %w", err)
			}
			pending = append(pending, f)
		}
		return nil
	}
	defer func() {
		for _, q := range pending {
			q.Abort()
		}
	}()
	finishReport := func(err error) (*RecipeReport, error) {
		if err != nil {
			rep.Error = err.Error()
			if ctx.Err() != nil {
				rep.Cancelled = true
				rep.Error = fmt.Sprintf("cancelled (%v): %v", context.Cause(ctx), err)
			}
		}
		if r.reportPath == "" {
			return rep, err
		}
		if perr := prepare(); perr != nil {
			if err == nil {
				err = perr
			}
			return rep, err
		}
		b, jerr := json.MarshalIndent(rep, "", "  ")
		if jerr != nil {
			return rep, errors.Join(err, jerr)
		}
		if werr := pending[0].Commit(append(b, '\n')); werr != nil && err == nil {
			err = fmt.Errorf("writing the report: %w", werr)
		}
		_ = pending[1].Commit([]byte(RecipeMarkdown(rep)))
		stem := strings.TrimSuffix(r.reportPath, filepath.Ext(r.reportPath))
		_ = PlotRecipe(stem+".png", rep) // a plot is a convenience: its failure does not fail the run
		return rep, err
	}
	names := make([]string, len(r.Steps))
	plans := make([]*stepPlan, len(r.Steps))
	for i, s := range r.Steps {
		names[i] = s.Name
		if names[i] == "" {
			names[i] = fmt.Sprintf("%d-%s", i+1, s.Command)
		}
		if !r.InProcess(i) {
			continue
		}
		p, err := r.plan(i)
		if err != nil {
			return finishReport(fmt.Errorf("step %d (%s): %w", i+1, names[i], err))
		}
		plans[i] = p
	}
	// the previous step's model: in memory (prevModel), in a file
	// (prevPath), or both
	var prevModel *onnxio.Model
	prevPath := ""
	for i, s := range r.Steps {
		name := names[i]
		stem := fmt.Sprintf("step%02d-%s", i+1, s.Command)
		if p := plans[i]; p != nil {
			if prevModel == nil && prevPath != "" && len(s.Inputs) == 0 {
				m, err := onnxio.Load(prevPath)
				if err != nil {
					return finishReport(fmt.Errorf("step %d (%s): %w", i+1, name, err))
				}
				prevModel = m
			}
			what := s.Command
			if p.t != nil {
				what = p.t.Name
			}
			r.logf("==> step %d (%s): %s in process\n", i+1, name, what)
			out, report := "", ""
			if r.WorkDir != "" {
				out, report = filepath.Join(work, stem+".onnx"), filepath.Join(work, stem+".json")
			}
			sr := StepResult{Step: i + 1, Name: name, Command: s.Command, Args: r.inProcessArgs(i, prevPath, out, report), Output: out}
			var o *stepOutcome
			var err error
			if p.t != nil {
				o, err = r.runInProcess(ctx, i, p, prevModel)
			} else {
				o, err = r.runCommand(ctx, i, p, prevModel)
			}
			if o != nil {
				sr.Result = o.result
				if s.Command == "quantize" && o.result != nil {
					// the input's size, as the command reports its input file's
					if n := r.inputBytes(i, rep.Steps); n > 0 {
						o.result["input_bytes"] = n
					}
				}
			}
			if err == nil && out != "" {
				err = r.writeStep(ctx, i, o, out, report)
			}
			if err != nil {
				sr.Error = err.Error()
				rep.Steps = append(rep.Steps, sr)
				return finishReport(fmt.Errorf("step %d (%s): %w", i+1, name, err))
			}
			rep.Steps = append(rep.Steps, sr)
			prevModel, prevPath = o.model, out
			continue
		}
		if run == nil {
			return finishReport(fmt.Errorf("step %d (%s): %s is not a command the library runs, and no StepRunner was given", i+1, name, s.Command))
		}
		dir, err := workDir()
		if err != nil {
			return finishReport(err)
		}
		if prevPath == "" && prevModel != nil && len(s.Inputs) == 0 {
			// the StepRunner reads files: the in-memory model is written
			prevPath = filepath.Join(dir, fmt.Sprintf("step%02d-input.onnx", i+1))
			if err := prevModel.Save(prevPath, &onnxio.SaveOptions{Context: ctx}); err != nil {
				return finishReport(fmt.Errorf("step %d (%s): writing its input: %w", i+1, name, err))
			}
		}
		out := filepath.Join(dir, stem+".onnx")
		stepReport := filepath.Join(dir, stem+".json")
		args := r.Args(i, prevPath, out, stepReport)
		sr := StepResult{Step: i + 1, Name: name, Command: s.Command, Args: args, Output: out}
		res, err := run(ctx, args)
		sr.Result = res
		if err != nil {
			sr.Error = err.Error()
			rep.Steps = append(rep.Steps, sr)
			return finishReport(fmt.Errorf("step %d (%s): %w", i+1, name, err))
		}
		rep.Steps = append(rep.Steps, sr)
		prevModel, prevPath = nil, out
	}
	if err := prepare(); err != nil {
		return rep, err
	}
	if prevModel == nil {
		m, err := onnxio.Load(prevPath)
		if err != nil {
			return finishReport(err)
		}
		prevModel = m
	}
	final, err := r.commit(ctx, prevModel, version)
	if final != nil {
		if doc, jerr := final.JSON(); jerr == nil {
			rep.Final = doc
		}
	}
	if err != nil {
		return finishReport(err)
	}
	rep.Output = r.outputPath
	rep.Passed = true
	return finishReport(nil)
}

// inputBytes is the size of step i's input: its input file, or the
// previous step's model ("bytes" of its result); 0 when unknown.
func (r *Recipe) inputBytes(i int, done []StepResult) int64 {
	if in := r.Steps[i].Inputs; len(in) == 1 {
		if st, err := os.Stat(r.Path(in[0])); err == nil {
			return st.Size()
		}
		return 0
	}
	if i == 0 || len(done) < i {
		return 0
	}
	switch n := done[i-1].Result["bytes"].(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	}
	return 0
}

// logf writes a progress line to r.Log (nothing when nil).
func (r *Recipe) logf(format string, args ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format, args...)
	}
}

// inProcessArgs is the report's "args" of in-process step i: the
// equivalent command line, with -o and --report only when the step
// writes its model (workdir), and "-" for a previous model that is only
// in memory (input "").
func (r *Recipe) inProcessArgs(i int, input, out, report string) []string {
	if input == "" {
		input = "-"
	}
	args := r.Args(i, input, out, report)
	if out != "" {
		return args
	}
	for j := 0; j+1 < len(args); j++ {
		if args[j] == "-o" && args[j+1] == "" {
			return append(args[:j:j], args[j+4:]...)
		}
	}
	return args
}

// writeStep writes an in-process step's model and its result (JSON and
// Markdown, as the command writes its --report) to the work folder (a
// recipe with workdir).
func (r *Recipe) writeStep(ctx context.Context, i int, o *stepOutcome, out, report string) error {
	so := &onnxio.SaveOptions{Context: ctx}
	if StepFlags(r.Steps[i].Command, r.Steps[i].Args).Bool("external-data") {
		so.External = onnxio.ExternalAlways
	}
	w, err := o.model.SaveFile(out, so)
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if o.result != nil {
		o.result["model"], o.result["output"] = out, out
		o.result["bytes"] = float64(w.Bytes()) // as JSON decodes it (the report's plot reads float64s)
	}
	b, err := jsonout.Marshal(o.result)
	if err != nil {
		return err
	}
	if err := os.WriteFile(report, b, 0o644); err != nil {
		return err
	}
	md, err := release.Markdown(b)
	if err != nil {
		return err
	}
	return os.WriteFile(release.MarkdownPath(report), []byte(md), 0o644)
}

// commit is the recipe's final step: the last step's model (at last) is
// committed by release.Commit to the output, gated by the recipe's gate
// against ref on data, with the chain's provenance.
func (r *Recipe) commit(ctx context.Context, m *onnxio.Model, version string) (*release.Report, error) {
	var err error
	opt := release.Options{
		Output:   r.outputPath,
		Report:   r.outputReportPath,
		External: r.ExternalData,
		Session:  r.Session,
	}
	var ref *onnxio.Model
	if r.Ref != "" {
		if ref, err = onnxio.Load(r.Path(r.Ref)); err != nil {
			return nil, fmt.Errorf("ref: %w", err)
		}
	}
	if r.Data != "" && (r.Gate != "" || r.OutputReport != "") {
		var names []string
		for _, in := range m.Inputs() {
			names = append(names, in.Name)
		}
		opt.DataName = r.Path(r.Data)
		if opt.Data, err = evalharness.LoadDatasetFor(opt.DataName, evalharness.DatasetOptions{Inputs: names}); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	if opt.Gate, err = evalharness.ParseGate(r.Gate); err != nil {
		return nil, err
	}
	ins, err := release.HashInputs(r.inputModels()...)
	if err != nil {
		return nil, err
	}
	opt.Provenance = &release.Provenance{Version: version, Inputs: ins}
	return release.Commit(ctx, m, ref, opt)
}

// inputModels lists the model files the recipe reads: every step's
// inputs, its base and ref flags, and the recipe's ref (resolved).
func (r *Recipe) inputModels() []string {
	var out []string
	for _, s := range r.Steps {
		for _, in := range s.Inputs {
			out = append(out, r.Path(in))
		}
		for _, k := range []string{"base", "ref"} {
			if v, ok := s.Args[k].(string); ok && v != "" {
				out = append(out, r.Path(v))
			}
		}
	}
	if r.Ref != "" {
		out = append(out, r.Path(r.Ref))
	}
	return out
}

// RecipeMarkdown renders a recipe report as Markdown.
func RecipeMarkdown(rep *RecipeReport) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Recipe %s (onnxpost %s)\n\n", mdText(rep.Recipe), rep.Version)
	fmt.Fprintf(&b, "| step | command | accuracy | kl | agreement | params | bytes | gate |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range rep.Steps {
		acc, kl, agr, gate := "", "", "", ""
		if m, ok := s.Result["metrics"].(map[string]any); ok {
			acc, kl, agr = num(m["accuracy"]), num(m["kl"]), num(m["agreement"])
		}
		if g, ok := s.Result["gate"].(map[string]any); ok {
			gate = fmt.Sprint(g["passed"])
		}
		if s.Error != "" {
			gate = "error: " + strings.SplitN(s.Error, "\n", 2)[0]
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", mdText(s.Name), mdText(s.Command), acc, kl, agr, num(s.Result["params"]), num(s.Result["bytes"]), mdText(gate))
	}
	if rep.Passed {
		fmt.Fprintf(&b, "\nOutput: %s\n", rep.Output)
	} else {
		fmt.Fprintf(&b, "\nNo output written: %s\n", strings.ReplaceAll(rep.Error, "\n", "\n    "))
	}
	return b.String()
}

// mdText makes a recipe-supplied string safe for one Markdown table cell
// or heading: line breaks and control characters become spaces, "|" is
// escaped.
func mdText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
	return strings.ReplaceAll(s, "|", "\\|")
}

func num(v any) string {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) && x > 1000 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', 4, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
