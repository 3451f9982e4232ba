// Package llmgen writes decoder-shaped ONNX language models with random
// weights and external data, for scale and memory benchmarks and for the
// tests that compare onnxpost's streaming paths with its in-memory ones.
//
// The graph is Llama-shaped: a token embedding (Gather), Layers blocks of
// RMSNorm → q/k/v MatMuls → causal multi-head attention → o MatMul →
// residual, RMSNorm → SwiGLU MLP (gate, up, down MatMuls) → residual, a
// final RMSNorm and an lm_head MatMul to [batch, seq, vocab] logits.
// Rotary embeddings are left out (they hold no weights). Inputs are
// input_ids and attention_mask ([batch, seq] int64); the mask is applied to
// the attention scores beside the causal mask.
//
// The model is written with onnxio's Save and a Transform that fills each
// tensor as it is written, so a multi-gigabyte model is generated holding a
// few tensors in memory.
package llmgen

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"path/filepath"
	"strconv"

	"github.com/onnxpost/onnxpost/evalharness/npz"
	"github.com/onnxpost/onnxpost/onnxio"
)

// Config is the shape of the generated decoder.
type Config struct {
	// Layers is the number of decoder blocks.
	Layers int
	// Hidden is the model width; Heads must divide it.
	Hidden, Heads int
	// FF is the width of the SwiGLU MLP.
	FF int
	// Vocab is the vocabulary size (embedding rows and logits).
	Vocab int
}

// OneB is a 1.06 B-parameter configuration (TinyLlama-like widths without
// grouped-query attention): 4.2 GB of float32.
var OneB = Config{Layers: 18, Hidden: 2048, Heads: 16, FF: 5632, Vocab: 32000}

// Validate checks that the configuration describes a model.
func (c Config) Validate() error {
	if c.Layers < 1 || c.Hidden < 1 || c.Heads < 1 || c.FF < 1 || c.Vocab < 2 {
		return fmt.Errorf("llmgen: every size must be positive (vocab ≥ 2): %+v", c)
	}
	if c.Hidden%c.Heads != 0 {
		return fmt.Errorf("llmgen: %d heads do not divide hidden size %d", c.Heads, c.Hidden)
	}
	return nil
}

// Params returns the number of weights (embedding, blocks, final norm,
// lm_head).
func (c Config) Params() int64 {
	d, f, v := int64(c.Hidden), int64(c.FF), int64(c.Vocab)
	block := 4*d*d + 3*d*f + 2*d
	return 2*v*d + int64(c.Layers)*block + d
}

// weight is one generated tensor: its shape and how its values are drawn.
type weight struct {
	name  string
	shape []int64
	norm  bool // RMSNorm scale: ones with a small random spread
}

func (c Config) weights() []weight {
	d, f, v := int64(c.Hidden), int64(c.FF), int64(c.Vocab)
	ws := []weight{{name: "model.embed_tokens.weight", shape: []int64{v, d}}}
	for l := 0; l < c.Layers; l++ {
		p := "model.layers." + strconv.Itoa(l) + "."
		ws = append(ws,
			weight{name: p + "input_layernorm.weight", shape: []int64{d}, norm: true},
			weight{name: p + "self_attn.q_proj.weight", shape: []int64{d, d}},
			weight{name: p + "self_attn.k_proj.weight", shape: []int64{d, d}},
			weight{name: p + "self_attn.v_proj.weight", shape: []int64{d, d}},
			weight{name: p + "self_attn.o_proj.weight", shape: []int64{d, d}},
			weight{name: p + "post_attention_layernorm.weight", shape: []int64{d}, norm: true},
			weight{name: p + "mlp.gate_proj.weight", shape: []int64{d, f}},
			weight{name: p + "mlp.up_proj.weight", shape: []int64{d, f}},
			weight{name: p + "mlp.down_proj.weight", shape: []int64{f, d}},
		)
	}
	return append(ws,
		weight{name: "model.norm.weight", shape: []int64{d}, norm: true},
		weight{name: "lm_head.weight", shape: []int64{d, v}},
	)
}

// Build returns the decoder's graph with one-element placeholders for its
// weights, and a Transform that fills each weight with values drawn from
// seed (a pure function of the seed and the weight's name): saving the model
// with that Transform writes the real tensors.
func Build(c Config, seed uint64) (*onnxio.Model, onnxio.TransformFunc, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	m := onnxio.New("llmgen-decoder", 17)
	shapes := map[string]weight{}
	for _, w := range c.weights() {
		shapes[w.name] = w
		t, err := onnxio.FromFloat32(w.name, onnxio.Float, []int64{1}, []float32{0})
		if err != nil {
			return nil, nil, err
		}
		if err := m.SetInitializer(t); err != nil {
			return nil, nil, err
		}
	}
	hd := c.Hidden / c.Heads
	consts := []*onnxio.Tensor{
		f32("const.eps", 1e-5),
		f32("const.scale", float32(1/math.Sqrt(float64(hd)))),
		f32("const.one", 1),
		f32("const.neg", -1e9),
		i64s("const.heads_shape", 0, 0, int64(c.Heads), int64(hd)),
		i64s("const.hidden_shape", 0, 0, int64(c.Hidden)),
		i64s("const.seq_index", 1),
		i64s("const.axis1", 1),
	}
	for _, t := range consts {
		if t == nil {
			return nil, nil, fmt.Errorf("llmgen: constant")
		}
		if err := m.SetInitializer(t); err != nil {
			return nil, nil, err
		}
	}
	m.AddInput(onnxio.ValueInfo{Name: "input_ids", DType: onnxio.Int64, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "sequence"}}})
	m.AddInput(onnxio.ValueInfo{Name: "attention_mask", DType: onnxio.Int64, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "sequence"}}})
	var nodes []onnxio.Node
	node := func(op, name string, attrs []onnxio.Attr, in ...string) string {
		out := name
		nodes = append(nodes, onnxio.Node{Name: name, OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs})
		return out
	}
	// mask [B, 1, T, T]: 0 where a query may attend, -1e9 elsewhere
	// (later positions, padded keys)
	shape := node("Shape", "mask/shape", nil, "input_ids")
	seq := node("Gather", "mask/seq", []onnxio.Attr{onnxio.AttrInt("axis", 0)}, shape, "const.seq_index")
	tt := node("Concat", "mask/tt", []onnxio.Attr{onnxio.AttrInt("axis", 0)}, seq, seq)
	ones := node("ConstantOfShape", "mask/ones", []onnxio.Attr{onnxio.AttrTensorVal("value", f32v("value", 1))}, tt)
	causal := node("Trilu", "mask/causal", []onnxio.Attr{onnxio.AttrInt("upper", 0)}, ones)
	keys := node("Cast", "mask/keys", []onnxio.Attr{onnxio.AttrInt("to", int64(onnxio.Float))}, "attention_mask")
	keys4 := node("Unsqueeze", "mask/keys4", nil, keys, "const.axis1")
	keys4 = node("Unsqueeze", "mask/keys4b", nil, keys4, "const.axis1")
	allowed := node("Mul", "mask/allowed", nil, causal, keys4)
	blocked := node("Sub", "mask/blocked", nil, "const.one", allowed)
	mask := node("Mul", "mask/bias", nil, blocked, "const.neg")

	rms := func(name, x, g string) string {
		sq := node("Mul", name+"/sq", nil, x, x)
		ms := node("ReduceMean", name+"/mean", []onnxio.Attr{onnxio.AttrIntList("axes", -1), onnxio.AttrInt("keepdims", 1)}, sq)
		r := node("Sqrt", name+"/sqrt", nil, node("Add", name+"/eps", nil, ms, "const.eps"))
		return node("Mul", name+"/scale", nil, node("Div", name+"/div", nil, x, r), g)
	}
	h := node("Gather", "model/embed_tokens", nil, "model.embed_tokens.weight", "input_ids")
	for l := 0; l < c.Layers; l++ {
		p := "model.layers." + strconv.Itoa(l) + "."
		n := "/model/layers." + strconv.Itoa(l)
		x := rms(n+"/input_layernorm", h, p+"input_layernorm.weight")
		q := node("MatMul", n+"/self_attn/q_proj/MatMul", nil, x, p+"self_attn.q_proj.weight")
		k := node("MatMul", n+"/self_attn/k_proj/MatMul", nil, x, p+"self_attn.k_proj.weight")
		v := node("MatMul", n+"/self_attn/v_proj/MatMul", nil, x, p+"self_attn.v_proj.weight")
		heads := func(name, t string, perm ...int64) string {
			r := node("Reshape", n+"/self_attn/"+name+"/Reshape", nil, t, "const.heads_shape")
			return node("Transpose", n+"/self_attn/"+name+"/Transpose", []onnxio.Attr{onnxio.AttrIntList("perm", perm...)}, r)
		}
		qh := heads("q", q, 0, 2, 1, 3)
		kh := heads("k", k, 0, 2, 3, 1)
		vh := heads("v", v, 0, 2, 1, 3)
		s := node("MatMul", n+"/self_attn/scores", nil, qh, kh)
		s = node("Mul", n+"/self_attn/scaled", nil, s, "const.scale")
		s = node("Add", n+"/self_attn/masked", nil, s, mask)
		s = node("Softmax", n+"/self_attn/softmax", []onnxio.Attr{onnxio.AttrInt("axis", -1)}, s)
		a := node("MatMul", n+"/self_attn/context", nil, s, vh)
		a = node("Transpose", n+"/self_attn/merge/Transpose", []onnxio.Attr{onnxio.AttrIntList("perm", 0, 2, 1, 3)}, a)
		a = node("Reshape", n+"/self_attn/merge/Reshape", nil, a, "const.hidden_shape")
		o := node("MatMul", n+"/self_attn/o_proj/MatMul", nil, a, p+"self_attn.o_proj.weight")
		h = node("Add", n+"/attn_residual", nil, h, o)
		x = rms(n+"/post_attention_layernorm", h, p+"post_attention_layernorm.weight")
		g := node("MatMul", n+"/mlp/gate_proj/MatMul", nil, x, p+"mlp.gate_proj.weight")
		u := node("MatMul", n+"/mlp/up_proj/MatMul", nil, x, p+"mlp.up_proj.weight")
		sg := node("Mul", n+"/mlp/silu", nil, g, node("Sigmoid", n+"/mlp/sigmoid", nil, g))
		act := node("Mul", n+"/mlp/act", nil, sg, u)
		d := node("MatMul", n+"/mlp/down_proj/MatMul", nil, act, p+"mlp.down_proj.weight")
		h = node("Add", n+"/mlp_residual", nil, h, d)
	}
	x := rms("/model/norm", h, "model.norm.weight")
	nodes = append(nodes, onnxio.Node{Name: "/lm_head/MatMul", OpType: "MatMul", Inputs: []string{x, "lm_head.weight"}, Outputs: []string{"logits"}})
	if err := m.InsertNodes(nodes...); err != nil {
		return nil, nil, err
	}
	m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "sequence"}, {Value: int64(c.Vocab)}}})

	fill := func(name string, t *onnxio.Tensor) (*onnxio.Tensor, error) {
		w, ok := shapes[name]
		if !ok {
			return t, nil // a constant of the graph
		}
		n, err := onnxio.NumElements(w.shape)
		if err != nil {
			return nil, err
		}
		raw := make([]byte, 4*n)
		// xorshift64 per tensor, uniform in ±amp: ~N(0, 0.02)'s spread
		// for matrices, 1 ± 0.1 for norm scales
		x := seed*0x9E3779B97F4A7C15 ^ hash(name)
		amp, base := float32(0.035), float32(0)
		if w.norm {
			amp, base = 0.1, 1
		}
		for i := int64(0); i < n; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			v := base + float32(int32(x>>32))/(1<<31)*amp
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		return onnxio.NewTensor(name, onnxio.Float, w.shape, raw)
	}
	return m, fill, nil
}

// Generate writes dir/name (e.g. "model.onnx") with its weights in an
// external data file beside it and returns the model's path.
func Generate(dir, name string, c Config, seed uint64) (string, error) {
	m, fill, err := Build(c, seed)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := m.Save(path, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Transform: fill}); err != nil {
		return "", err
	}
	return path, nil
}

func f32(name string, v float32) *onnxio.Tensor {
	t, err := onnxio.FromFloat32(name, onnxio.Float, nil, []float32{v})
	if err != nil {
		return nil
	}
	return t
}

// f32v is a one-element, one-dimensional float tensor (ConstantOfShape's value).
func f32v(name string, v float32) *onnxio.Tensor {
	t, err := onnxio.FromFloat32(name, onnxio.Float, []int64{1}, []float32{v})
	if err != nil {
		return nil
	}
	return t
}

func i64s(name string, v ...int64) *onnxio.Tensor {
	t, err := onnxio.FromInt64(name, onnxio.Int64, []int64{int64(len(v))}, v)
	if err != nil {
		return nil
	}
	return t
}

// hash is FNV-1a of s, made odd (a non-zero xorshift state).
func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64() | 1
}

// WriteTokens writes a calibration set for the decoder: an .npz with
// input_ids (samples × seq random token ids below vocab, drawn from seed)
// and an all-ones attention_mask.
func WriteTokens(path string, vocab, samples, seq int, seed uint64) error {
	if vocab < 1 || samples < 1 || seq < 1 {
		return fmt.Errorf("llmgen: tokens need a positive vocabulary, sample count and length")
	}
	n := samples * seq
	ids, mask := make([]byte, 8*n), make([]byte, 8*n)
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(ids[8*i:], (x>>11)%uint64(vocab))
		binary.LittleEndian.PutUint64(mask[8*i:], 1)
	}
	shape := []int64{int64(samples), int64(seq)}
	return npz.WriteFile(path, map[string]*npz.Array{
		"input_ids":      {Type: npz.Int64, Shape: shape, Data: ids},
		"attention_mask": {Type: npz.Int64, Shape: shape, Data: mask},
	})
}
