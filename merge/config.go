package merge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"

	"gopkg.in/yaml.v3"

	"github.com/onnxpost/onnxpost/internal/safefs"
)

// Config is a merge described in a YAML file, in the spirit of mergekit's:
//
//	merge_method: ties          # or method:
//	base_model: base.onnx
//	models:
//	  - model: a.onnx
//	    parameters: {weight: 1.0, density: 0.2}
//	  - model: b.onnx
//	    fisher: b.fisher.onnx   # Fisher merging only
//	parameters:                 # global parameters
//	  density: 0.2
//	  lambda: 1.0
//	  trim_scope: global
//	  normalize: true           # linear
//	  t: 0.5                    # slerp
//	  seed: 0
//	  fisher_floor: 1.0e-6
//	  fisher_normalize: false
//	  include: "MatMul|Conv"
//	  exclude: "norm"
//	output: merged.onnx
//	data: val.npz
//	gate: accuracy_drop<=0.01
//
// Unknown keys are an error. Relative paths are relative to the file's
// folder. Per-model parameters override global ones.
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
	// Parameters are the global parameters.
	Parameters ConfigParams `yaml:"parameters"`
	// Output, Data and Gate are the CLI's -o, --data and --gate.
	Output string `yaml:"output"`
	Data   string `yaml:"data"`
	Gate   string `yaml:"gate"`
}

// ConfigModel is one input model of a Config.
type ConfigModel struct {
	// Model is the model's path.
	Model string `yaml:"model"`
	// Fisher is the path of its diagonal Fisher file (Fisher merging).
	Fisher string `yaml:"fisher"`
	// Parameters override the global weight and density for this model.
	Parameters struct {
		Weight  *float64 `yaml:"weight"`
		Density *float64 `yaml:"density"`
	} `yaml:"parameters"`
}

// ConfigParams are a Config's global parameters.
// Each field mirrors the CLI flag of the same name (weight is the default
// per-model weight, normalize the opposite of --no-normalize); nil or ""
// means unset.
type ConfigParams struct {
	Weight          *float64 `yaml:"weight"`
	Density         *float64 `yaml:"density"`
	Lambda          *float64 `yaml:"lambda"`
	TrimScope       string   `yaml:"trim_scope"`
	Normalize       *bool    `yaml:"normalize"`
	T               *float64 `yaml:"t"`
	Seed            *int64   `yaml:"seed"`
	FisherFloor     *float64 `yaml:"fisher_floor"`
	FisherNormalize *bool    `yaml:"fisher_normalize"`
	Include         string   `yaml:"include"`
	Exclude         string   `yaml:"exclude"`
}

// ConfigOption configures LoadConfig and ParseConfig.
type ConfigOption func(*configOptions)

type configOptions struct{ outDir string }

// WithOutDir resolves the config's output inside dir (the CLI's
// --out-dir) instead of the config's folder. dir must exist.
func WithOutDir(dir string) ConfigOption {
	return func(o *configOptions) { o.outDir = dir }
}

// processKeys are options of the process, not of a merge: a config may
// not set them.
var processKeys = map[string]string{
	"ort-lib": "chooses the native ONNX Runtime library (pass --ort-lib on the command line)",
	"ort_lib": "chooses the native ONNX Runtime library (pass --ort-lib on the command line)",
	"threads": "sets the process's thread count (pass --threads on the command line)",
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
	if len(c.Models) == 0 {
		return nil, fmt.Errorf("%w: merge config lists no models", ErrOptions)
	}
	join := func(p string) string {
		if p == "" || filepath.IsAbs(p) || dir == "" {
			return p
		}
		return filepath.Join(dir, p)
	}
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
	for i := range c.Models {
		if c.Models[i].Model == "" {
			return nil, fmt.Errorf("%w: model %d of the merge config has no path", ErrOptions, i+1)
		}
		c.Models[i].Model = join(c.Models[i].Model)
		c.Models[i].Fisher = join(c.Models[i].Fisher)
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
// validated: call Validate).
func (c *Config) Options() (Options, error) {
	var o Options
	m, err := ParseMethod(c.Method)
	if err != nil {
		return o, err
	}
	o.Method = m
	g := c.Parameters
	gw, gd := 1.0, 0.0
	if g.Weight != nil {
		gw = *g.Weight
	}
	if g.Density != nil {
		gd = *g.Density
		if gd == 0 {
			return o, fmt.Errorf("%w: density 0 is outside (0, 1]", ErrOptions)
		}
		o.Density = gd
	}
	if gd == 0 {
		gd = m.DefaultDensity()
	}
	for _, mm := range c.Models {
		w, d := gw, gd
		if mm.Parameters.Weight != nil {
			w = *mm.Parameters.Weight
		}
		if mm.Parameters.Density != nil {
			d = *mm.Parameters.Density
		}
		o.Weights = append(o.Weights, w)
		o.Densities = append(o.Densities, d)
	}
	o.Lambda = g.Lambda
	o.TrimScope = TrimScope(g.TrimScope)
	if g.Normalize != nil {
		o.NoNormalize = !*g.Normalize
	}
	o.T = g.T
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
