package merge

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// mergekitKeys handles mergekit's top-level keys that onnxpost's own
// format lacks: slices (one full-range slice becomes models), dtype and
// the tokenizer keys (noted), out_dtype and modules (refused).
func (c *Config) mergekitKeys() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...)
	}
	set := func(n yaml.Node) bool { return n.Kind != 0 }
	if set(c.Modules) {
		return bad("line %d: modules (multi-module merges) are not supported", c.Modules.Line)
	}
	if c.OutDtype != "" {
		return bad("out_dtype %q is not supported: onnxpost writes each tensor in its input model's type (the graph's types must not change)", c.OutDtype)
	}
	switch c.Dtype {
	case "", "float16", "bfloat16", "fp16", "bf16", "half":
	case "float32", "fp32", "float":
		c.note("dtype " + c.Dtype + ": the weights keep their input models' type (float32 models stay float32; fp16 inputs are not widened)")
	default:
		return bad("dtype %q (want float32, float16 or bfloat16)", c.Dtype)
	}
	for key, n := range map[string]yaml.Node{"tokenizer_source": c.TokenizerSource, "tokenizer": c.Tokenizer, "chat_template": c.ChatTemplate} {
		if set(n) {
			c.note(key + " is ignored: an ONNX model carries no tokenizer here, only its graph and weights")
		}
	}
	if c.Method == "passthrough" {
		return c.passthroughKeys()
	}
	if len(c.Slices) == 0 {
		return nil
	}
	if len(c.Models) > 0 {
		return bad("a merge config lists models or slices, not both")
	}
	if len(c.Slices) > 1 {
		return bad("%d slices with merge_method %s: only passthrough stacks slices; other methods take one slice over all layers", len(c.Slices), c.Method)
	}
	var lr []int
	for i, src := range c.Slices[0].Sources {
		if len(src.LayerRange) != 2 {
			return bad("slice source %d: layer_range needs [start, end]", i+1)
		}
		if lr == nil {
			lr = src.LayerRange
		}
		if src.LayerRange[0] != 0 || src.LayerRange[0] != lr[0] || src.LayerRange[1] != lr[1] || lr[1] <= 0 {
			return bad("slice source %d: layer_range %v: only the same full range [0, N] for every source is supported (layer stacking is not)", i+1, src.LayerRange)
		}
		c.Models = append(c.Models, ConfigModel{Model: src.Model, Parameters: src.Parameters})
	}
	c.layers = lr[1]
	return nil
}

// dropBaseFromModels takes the base model out of the models when it is
// listed there too (mergekit merges it as the base only), for the methods
// that take a base.
func (c *Config) dropBaseFromModels() {
	if c.Base == "" || len(c.Models) < 2 {
		return
	}
	m, err := ParseMethod(c.Method)
	if err != nil {
		return
	}
	takesBase := m.NeedsBase() || m == SLERP
	if spec, ok := mergekitMethods[m]; ok {
		takesBase = spec.base != baseNone
	}
	if !takesBase {
		return
	}
	var kept []ConfigModel
	for _, mm := range c.Models {
		if sameFile(mm.Model, c.Base) {
			continue
		}
		kept = append(kept, mm)
	}
	if len(kept) > 0 && len(kept) < len(c.Models) {
		c.Models = kept
	}
}

func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// ModelPath resolves a model path as mergekit configs name models: an
// ONNX file, or a folder holding model.onnx.
func ModelPath(p string) string {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return filepath.Join(p, "model.onnx")
	}
	return p
}

// OutputDtype returns the weight type the config's dtype asks for, as
// quant's weight type ("fp16" or "bf16"), or "" when the weights keep
// their type (no dtype, or float32).
func (c *Config) OutputDtype() string {
	switch c.Dtype {
	case "float16", "fp16", "half":
		return "fp16"
	case "bfloat16", "bf16":
		return "bf16"
	}
	return ""
}

// Stack returns the layer stack of a passthrough config (nil for the
// other methods): one StackSlice per slice, whose Model indexes Paths.
func (c *Config) Stack() []StackSlice { return c.stack }

// passthroughKeys reads the slices of a passthrough config (mergekit's
// layer stacking: each slice one source with a layer_range [start, end),
// end excluded) into Models (each path once) and stack. passthrough takes
// no base model, no models list and no parameters.
func (c *Config) passthroughKeys() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: passthrough: "+format, append([]any{ErrOptions}, args...)...)
	}
	if len(c.Models) > 0 || len(c.Slices) == 0 {
		return bad("list the layers as slices (each with one source: model and layer_range), not models")
	}
	if c.Base != "" {
		return bad("takes no base_model (it copies layers, it does not merge them)")
	}
	p := c.Parameters
	var params []string
	for name := range p.Settings {
		params = append(params, name)
	}
	for name, set := range map[string]bool{"trim_scope": p.TrimScope != "", "seed": p.Seed != nil, "fisher_floor": p.FisherFloor != nil,
		"fisher_normalize": p.FisherNormalize != nil, "include": p.Include != "", "exclude": p.Exclude != ""} {
		if set {
			params = append(params, name)
		}
	}
	if len(params) > 0 {
		sort.Strings(params)
		return bad("takes no parameters (mergekit's scale is not supported either); got %s", strings.Join(params, ", "))
	}
	index := map[string]int{}
	for i, sl := range c.Slices {
		if len(sl.Sources) != 1 {
			return bad("slice %d lists %d sources: passthrough takes one per slice", i+1, len(sl.Sources))
		}
		src := sl.Sources[0]
		if src.Model == "" {
			return bad("slice %d: source has no model", i+1)
		}
		if len(src.Parameters) > 0 {
			return bad("slice %d: the source takes no parameters", i+1)
		}
		if len(src.LayerRange) != 2 || src.LayerRange[0] < 0 || src.LayerRange[0] >= src.LayerRange[1] {
			return bad("slice %d: layer_range %v: want [start, end] with 0 ≤ start < end (end excluded)", i+1, src.LayerRange)
		}
		k, ok := index[src.Model]
		if !ok {
			k = len(c.Models)
			index[src.Model] = k
			c.Models = append(c.Models, ConfigModel{Model: src.Model})
		}
		c.stack = append(c.stack, StackSlice{Model: k, Start: src.LayerRange[0], End: src.LayerRange[1]})
	}
	return nil
}
