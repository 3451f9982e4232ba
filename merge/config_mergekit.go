package merge

import (
	"fmt"
	"os"
	"path/filepath"

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
	case "":
	case "float32", "float16", "bfloat16", "fp32", "fp16", "bf16", "float", "half":
		c.note(fmt.Sprintf("dtype %s has no effect: every value is computed in float64 and written in its input model's type", c.Dtype))
	default:
		return bad("dtype %q (want float32, float16 or bfloat16)", c.Dtype)
	}
	for key, n := range map[string]yaml.Node{"tokenizer_source": c.TokenizerSource, "tokenizer": c.Tokenizer, "chat_template": c.ChatTemplate} {
		if set(n) {
			c.note(key + " is ignored: an ONNX model carries no tokenizer here, only its graph and weights")
		}
	}
	if len(c.Slices) == 0 {
		return nil
	}
	if len(c.Models) > 0 {
		return bad("a merge config lists models or slices, not both")
	}
	if len(c.Slices) > 1 {
		return bad("%d slices: layer stacking (passthrough, several slices) is not supported; one slice over all layers is", len(c.Slices))
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
