package merge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/onnxpost/onnxpost/internal/safefs"
)

// Config is a merge described in a YAML file, onnxpost's own keys or
// mergekit's as its users write them:
//
//	merge_method: ties          # or method:; mergekit's names (model_stock, della...)
//	base_model: base.onnx       # or base:; an .onnx file or a folder holding model.onnx
//	models:
//	  - model: a.onnx
//	    parameters:
//	      weight: 1.0
//	      density: [1, 0.7, 0.1]         # a gradient across the layers
//	  - model: b.onnx
//	    parameters:
//	      weight:
//	        - filter: mlp                # a substring of the tensor's name
//	          value: 0.5
//	        - value: 0
//	  - model: c.onnx
//	    fisher: c.fisher.onnx   # Fisher merging only
//	parameters:                 # global parameters (scalars, gradients, filters)
//	  normalize: true
//	  int8_mask: true
//	  lambda: 1.0
//	  trim_scope: global        # onnxpost's own keys: trim_scope, seed,
//	  seed: 0                   # fisher_floor, fisher_normalize, include, exclude
//	dtype: float16              # the output's weights: float16 or bfloat16
//	output: merged.onnx
//	data: val.npz
//	gate: accuracy_drop<=0.01
//
// Instead of models, mergekit's slices may list one slice whose sources
// all take the same full layer_range [0, N] (N the model's layer count):
// the same merge. With merge_method passthrough the slices stack layers
// instead (see Stack and Config.Stack): each slice one source with a
// layer_range [start, end), end excluded, as mergekit reads it. dtype
// float16 or bfloat16 converts the output's weights (OutputDtype). A
// base_model also listed among the models is taken out of them (mergekit
// merges it as the base only).
//
// Which parameters a method takes is Method.Params; anything else, and
// every unknown key, is an error naming it, raised before any model is
// read. Relative paths are relative to the file's folder. Per-model
// parameters override global ones.
//
// A config may come from someone else. The paths it reads (models, base,
// fisher files, data) may be anywhere; the one it writes (output) must be
// a relative path that stays inside the file's folder, or inside the
// folder given by WithOutDir: absolute paths, ".." and symbolic links that
// leave it are refused. Process-level options (ort-lib, threads) cannot be
// set by a config.
type Config struct {
	// Method is the merge method; MergeMethod is mergekit's spelling of
	// the key (after parsing, Method holds whichever was given).
	Method      string `yaml:"method"`
	MergeMethod string `yaml:"merge_method"`
	// Base is the base model's path; BaseModel is mergekit's key (after
	// parsing, Base holds whichever was given).
	BaseModel string `yaml:"base_model"`
	Base      string `yaml:"base"`
	// Models are the merged models, in order.
	Models []ConfigModel `yaml:"models"`
	// Slices is mergekit's layer-slice form of Models (see above).
	Slices []ConfigSlice `yaml:"slices"`
	// Parameters are the global parameters.
	Parameters ConfigParams `yaml:"parameters"`
	// Output, Data and Gate are the merge's output path, evaluation data
	// and gate.
	Output string `yaml:"output"`
	Data   string `yaml:"data"`
	Gate   string `yaml:"gate"`
	// Dtype is the output's weight type (see OutputDtype).
	// TokenizerSource, Tokenizer and ChatTemplate are mergekit's keys
	// that do not apply to ONNX weight merging: accepted, and noted in
	// Notes. OutDtype and Modules are refused.
	Dtype           string    `yaml:"dtype"`
	OutDtype        string    `yaml:"out_dtype"`
	TokenizerSource yaml.Node `yaml:"tokenizer_source"`
	Tokenizer       yaml.Node `yaml:"tokenizer"`
	ChatTemplate    yaml.Node `yaml:"chat_template"`
	Modules         yaml.Node `yaml:"modules"`
	// Notes are what the merge does differently from what a mergekit user
	// may expect of the file (keys accepted with no effect), for the CLI
	// to print.
	Notes []string `yaml:"-"`
	// layers is the layer count a slices: form requires (0: none).
	layers int
	// stack is a passthrough config's layer stack.
	stack []StackSlice
}

// ConfigModel is one input model of a Config.
type ConfigModel struct {
	// Model is the model's path.
	Model string `yaml:"model"`
	// Fisher is the path of its diagonal Fisher file (Fisher merging).
	Fisher string `yaml:"fisher"`
	// Parameters are its own parameters (weight, density, gamma,
	// epsilon), overriding the global ones.
	Parameters map[string]Setting `yaml:"parameters"`
}

// ConfigSlice is one of mergekit's output slices.
type ConfigSlice struct {
	// Sources are the slice's input models and layer ranges.
	Sources []struct {
		Model      string             `yaml:"model"`
		LayerRange []int              `yaml:"layer_range"`
		Parameters map[string]Setting `yaml:"parameters"`
	} `yaml:"sources"`
}

// ConfigParams are a Config's global parameters: onnxpost's own typed
// keys, and the method's parameters (Method.Params, mergekit's names) in
// Settings. nil or "" means unset.
type ConfigParams struct {
	TrimScope       string   `yaml:"trim_scope"`
	Seed            *int64   `yaml:"seed"`
	FisherFloor     *float64 `yaml:"fisher_floor"`
	FisherNormalize *bool    `yaml:"fisher_normalize"`
	Include         string   `yaml:"include"`
	Exclude         string   `yaml:"exclude"`
	// Settings are the other parameters (weight, density, lambda,
	// normalize, t, gamma, ...): scalars, gradients or filter lists.
	Settings map[string]Setting `yaml:",inline"`
}

// ConfigOption configures LoadConfig and ParseConfig.
type ConfigOption func(*configOptions)

type configOptions struct{ outDir string }

// WithOutDir resolves the config's output inside dir (the CLI's
// out-dir flag) instead of the config's folder. dir must exist.
func WithOutDir(dir string) ConfigOption {
	return func(o *configOptions) { o.outDir = dir }
}

// processKeys are options of the process, not of a merge: a config may
// not set them.
var processKeys = map[string]string{
	"ort-lib": "chooses the native ONNX Runtime library (the program that runs the config passes the library's path)",
	"ort_lib": "chooses the native ONNX Runtime library (the program that runs the config passes the library's path)",
	"threads": "sets the process's thread count (the program that runs the config sets it)",
}

// LoadConfig reads and parses a merge config file.
func LoadConfig(path string, opts ...ConfigOption) (*Config, error) {
	b, err := safefs.ReadConfig(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(bytes.NewReader(b), filepath.Dir(path), opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a merge config; relative paths are joined to dir
// ("" for the working directory). Unknown keys, process-level keys, a
// second document, missing models and an output that leaves its folder
// are errors wrapping ErrOptions.
func ParseConfig(r io.Reader, dir string, opts ...ConfigOption) (*Config, error) {
	var o configOptions
	for _, f := range opts {
		f(&o)
	}
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err == nil && len(root.Content) > 0 && root.Content[0].Kind == yaml.MappingNode {
		top := root.Content[0]
		for i := 0; i+1 < len(top.Content); i += 2 {
			k := top.Content[i]
			if why, ok := processKeys[k.Value]; ok {
				return nil, fmt.Errorf("%w: line %d: a merge config cannot set process-level options: %q %s", ErrOptions, k.Line, k.Value, why)
			}
			if k.Value == "parameters" && top.Content[i+1].Kind == yaml.MappingNode {
				p := top.Content[i+1]
				for j := 0; j < len(p.Content); j += 2 {
					if why, ok := processKeys[p.Content[j].Value]; ok {
						return nil, fmt.Errorf("%w: line %d: a merge config cannot set process-level options: %q %s", ErrOptions, p.Content[j].Line, p.Content[j].Value, why)
					}
				}
			}
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty merge config", ErrOptions)
		}
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: merge config holds more than one YAML document", ErrOptions)
	}
	if c.Method != "" && c.MergeMethod != "" && c.Method != c.MergeMethod {
		return nil, fmt.Errorf("%w: method %q and merge_method %q disagree", ErrOptions, c.Method, c.MergeMethod)
	}
	if c.Method == "" {
		c.Method = c.MergeMethod
	}
	if c.Base != "" && c.BaseModel != "" && c.Base != c.BaseModel {
		return nil, fmt.Errorf("%w: base %q and base_model %q disagree", ErrOptions, c.Base, c.BaseModel)
	}
	if c.Base == "" {
		c.Base = c.BaseModel
	}
	if err := c.mergekitKeys(); err != nil {
		return nil, err
	}
	if len(c.Models) == 0 {
		return nil, fmt.Errorf("%w: merge config lists no models", ErrOptions)
	}
	join := func(p string) string {
		if p == "" || filepath.IsAbs(p) || dir == "" {
			return p
		}
		return filepath.Join(dir, p)
	}
	model := func(p string) string { return ModelPath(join(p)) }
	if c.Output != "" {
		base := dir
		if o.outDir != "" {
			base = o.outDir
		}
		if base == "" {
			base = "."
		}
		out, err := safefs.WritePath(base, c.Output)
		if err != nil {
			return nil, fmt.Errorf("%w: output: %v", ErrOptions, err)
		}
		c.Output = out
	}
	c.Base, c.Data = join(c.Base), join(c.Data)
	if c.Base != "" {
		c.Base = model(c.Base)
	}
	for i := range c.Models {
		if c.Models[i].Model == "" {
			return nil, fmt.Errorf("%w: model %d of the merge config has no path", ErrOptions, i+1)
		}
		c.Models[i].Model = model(c.Models[i].Model)
		c.Models[i].Fisher = join(c.Models[i].Fisher)
	}
	c.dropBaseFromModels()
	// the method and its parameters are checked now, before any model is read
	if c.stack != nil {
		return &c, nil
	}
	if _, err := c.Options(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Paths returns the model paths, in order.
func (c *Config) Paths() []string {
	p := make([]string, len(c.Models))
	for i, m := range c.Models {
		p[i] = m.Model
	}
	return p
}

// FisherPaths returns the Fisher file of each model, or nil when none has
// one. A config naming Fisher files for some models but not all is an error.
func (c *Config) FisherPaths() ([]string, error) {
	var p []string
	n := 0
	for _, m := range c.Models {
		p = append(p, m.Fisher)
		if m.Fisher != "" {
			n++
		}
	}
	switch n {
	case 0:
		return nil, nil
	case len(p):
		return p, nil
	}
	return nil, fmt.Errorf("%w: %d of %d models name a fisher file", ErrOptions, n, len(p))
}

// Options returns the merge options the config describes (not yet
// validated: call Validate). Parameters the method does not declare are
// errors naming them; scalars are set directly, gradients and filter
// lists go to Options.Tensor (evaluated per tensor by New).
func (c *Config) Options() (Options, error) {
	var o Options
	if c.stack != nil {
		return o, fmt.Errorf("%w: passthrough copies layers, it takes no merge options (see Config.Stack)", ErrOptions)
	}
	m, err := ParseMethod(c.Method)
	if err != nil {
		return o, err
	}
	o.Method = m
	o.RequireLayers = c.layers
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
	}
	ts := &TensorSettings{Global: map[string]Setting{}}
	num := func(name string, s Setting) (float64, error) {
		f, err := strconv.ParseFloat(s.Scalar, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, bad("line %d: parameter %s: %q is not a finite number", s.line, name, s.Scalar)
		}
		return f, nil
	}
	// global parameters
	gw, gd := 1.0, 0.0
	names := make([]string, 0, len(c.Parameters.Settings))
	for name := range c.Parameters.Settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := c.Parameters.Settings[name]
		spec, err := paramSpec(m, name)
		if err != nil {
			return o, at(s.line, "", err)
		}
		if !s.IsScalar() && spec.Kind != "float" {
			return o, bad("line %d: parameter %s is a %s: it cannot vary by tensor", s.line, name, spec.Kind)
		}
		if name == "int8_mask" {
			c.note("int8_mask changes nothing here: masks are never stored, every value is computed in float64")
		}
		v := s.Scalar
		if !s.IsScalar() {
			ts.Global[spec.Name] = s
			v = s.first()
		}
		switch spec.Name {
		case "weight":
			if gw, err = num(name, Setting{Scalar: v, line: s.line}); err != nil {
				return o, err
			}
		case "density":
			if gd, err = num(name, Setting{Scalar: v, line: s.line}); err != nil {
				return o, err
			}
			if gd == 0 {
				return o, bad("line %d: density 0 is outside (0, 1]", s.line)
			}
			o.Density = gd
		default:
			if err := o.SetParam(spec.Name, v); err != nil {
				return o, at(s.line, "", err)
			}
		}
	}
	if gd == 0 {
		gd = m.DefaultDensity()
	}
	mp := &o.Mergekit
	var gammas, epsilons []float64
	for i, mm := range c.Models {
		w, d := gw, gd
		g, e := -1.0, -1.0
		own := map[string]bool{}
		pm := map[string]Setting{}
		for name, s := range mm.Parameters {
			spec, err := paramSpec(m, name)
			if err != nil {
				return o, at(s.line, fmt.Sprintf("model %d: ", i+1), err)
			}
			if !spec.PerModel {
				return o, bad("line %d: model %d: parameter %s is global, not per model (set it under the top-level parameters)", s.line, i+1, name)
			}
			v := s.Scalar
			if s.IsScalar() {
				own[spec.Name] = true
			} else {
				pm[spec.Name] = s
				v = s.first()
			}
			f, err := num(name, Setting{Scalar: v, line: s.line})
			if err != nil {
				return o, err
			}
			switch spec.Name {
			case "weight":
				w = f
			case "density":
				d = f
			case "gamma":
				g = f
			case "epsilon":
				e = f
			}
		}
		ts.PerModel = append(ts.PerModel, pm)
		ts.OwnScalars = append(ts.OwnScalars, own)
		o.Weights = append(o.Weights, w)
		o.Densities = append(o.Densities, d)
		gammas = append(gammas, g)
		epsilons = append(epsilons, e)
	}
	fill := func(xs []float64, global *float64, def float64) []float64 {
		v := def
		if global != nil {
			v = *global
		}
		for i := range xs {
			if xs[i] < 0 {
				xs[i] = v
			}
		}
		return xs
	}
	if mergekitMethods[m].gta {
		mp.Gammas = fill(gammas, mp.Gamma, 0.01)
		mp.Epsilons = fill(epsilons, mp.Epsilon, 0.15)
	}
	varies := len(ts.Global) > 0
	for _, pm := range ts.PerModel {
		varies = varies || len(pm) > 0
	}
	if varies {
		o.Tensor = ts
	}
	g := c.Parameters
	o.TrimScope = TrimScope(g.TrimScope)
	if m == TIES && o.TrimScope == "" && o.Tensor != nil && settingVaries(o.Tensor, "density") {
		o.TrimScope = TrimTensor
		c.note("density varies by tensor: TIES trims per tensor (trim_scope: tensor, as mergekit does)")
	}
	if g.Seed != nil {
		o.Seed = *g.Seed
	}
	if g.FisherFloor != nil {
		o.FisherFloor = *g.FisherFloor
	}
	if g.FisherNormalize != nil {
		o.FisherNormalize = *g.FisherNormalize
	}
	for _, re := range []struct {
		s   string
		dst **regexp.Regexp
	}{{g.Include, &o.Include}, {g.Exclude, &o.Exclude}} {
		if re.s == "" {
			continue
		}
		r, err := regexp.Compile(re.s)
		if err != nil {
			return o, fmt.Errorf("%w: %v", ErrOptions, err)
		}
		*re.dst = r
	}
	return o, nil
}

// at places a line number (and prefix) after ErrOptions's text in err.
func at(line int, prefix string, err error) error {
	msg := strings.TrimPrefix(err.Error(), ErrOptions.Error()+": ")
	return fmt.Errorf("%w: line %d: %s%s", ErrOptions, line, prefix, msg)
}

// note adds a note once.
func (c *Config) note(s string) {
	for _, n := range c.Notes {
		if n == s {
			return
		}
	}
	c.Notes = append(c.Notes, s)
}
