package merge

import (
	"path/filepath"
	"testing"

	"github.com/onnxpost/onnxpost/merge/internal/synth"
	"github.com/onnxpost/onnxpost/onnxio"
)

// TestFindLayersZoo finds the zoo transformer's two layers (attention and
// MLP sub-blocks each) and names its tensors the way mergekit's filters
// expect; the MLP has no residual block, hence no layer.
func TestFindLayersZoo(t *testing.T) {
	load := func(fam string) *onnxio.Model {
		m, err := onnxio.Load(filepath.Join(zooDir(), fam, "base.onnx"))
		if err != nil {
			t.Skipf("zoo model missing (make zoo): %v", err)
		}
		return m
	}
	l := FindLayers(load("transformer"))
	if l.Count != 2 {
		t.Fatalf("transformer: %d layers, want 2", l.Count)
	}
	want := map[string]string{
		"embed.weight":        "model.embed_tokens.embed.weight",
		"pos":                 "model.embed_tokens.pos",
		"blocks.0.ln1.weight": "model.layers.0.input_layernorm.blocks.0.ln1.weight",
		"blocks.0.q.weight":   "model.layers.0.self_attn.blocks.0.q.weight",
		"blocks.0.o.bias":     "model.layers.0.self_attn.blocks.0.o.bias",
		"blocks.1.ln2.bias":   "model.layers.1.post_attention_layernorm.blocks.1.ln2.bias",
		"blocks.1.ff2.weight": "model.layers.1.mlp.blocks.1.ff2.weight",
		"ln.weight":           "model.norm.ln.weight",
		"head.weight":         "lm_head.head.weight",
	}
	for n, a := range want {
		if l.Alias[n] != a {
			t.Errorf("alias of %s = %q, want %q", n, l.Alias[n], a)
		}
	}
	for n, tv := range map[string]float64{"blocks.0.q.weight": 0, "blocks.1.ff1.bias": 1, "head.weight": 0, "embed.weight": 0} {
		if got := l.T(n); got != tv {
			t.Errorf("T(%s) = %v, want %v", n, got, tv)
		}
	}
	if l := FindLayers(load("mlp")); l.Count != 0 {
		t.Errorf("mlp: %d layers, want 0", l.Count)
	}
}

// TestFindLayersSynth finds the layers of synthetic transformers built by
// another graph builder (merge/internal/synth), for 1, 3 and 5 layers.
func TestFindLayersSynth(t *testing.T) {
	for _, layers := range []int{1, 3, 5} {
		p := filepath.Join(t.TempDir(), "m.onnx")
		c := synth.Config{Layers: layers, Hidden: 8, FFN: 16, Vocab: 20, Classes: 3, DType: onnxio.Float}
		if err := synth.Write(p, c, 1, 0, 0, false); err != nil {
			t.Fatal(err)
		}
		m, err := onnxio.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		l := FindLayers(m)
		if l.Count != layers {
			t.Errorf("%d-layer synth: found %d layers", layers, l.Count)
		}
		seen := map[int]bool{}
		for _, k := range l.Layer {
			seen[k] = true
		}
		if len(seen) != layers {
			t.Errorf("%d-layer synth: tensors in %d distinct layers", layers, len(seen))
		}
	}
}
