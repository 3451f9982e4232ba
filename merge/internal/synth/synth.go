// Package synth builds synthetic transformer-shaped ONNX models with onnxio,
// for merge tests and benchmarks: an embedding, a stack of pre-norm blocks
// (LayerNormalization, single-head attention with MatMul weights, a ReLU
// MLP, residual adds) and a classifier, with seeded random weights. A
// "fine-tune" is the base plus seeded Gaussian deltas, so models built from
// the same Config share one architecture and differ only in their floats.
package synth

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Config sizes a model.
type Config struct {
	Layers, Hidden, FFN, Vocab, Classes int
	// DType of the float parameters (onnxio.Float, Float16, BFloat16).
	DType onnxio.DType
}

// Params returns the number of float parameters.
func (c Config) Params() int64 {
	h, f := int64(c.Hidden), int64(c.FFN)
	per := 4*h*h + 4*h + 2*h*f + f + h + 4*h
	return int64(c.Vocab)*h + int64(c.Layers)*per + 2*h + h*int64(c.Classes) + 1 // + attn_scale
}

// ForBytes returns a config of about n bytes of float32 parameters with
// hidden size 1024, FFN 4096, vocabulary 8192 and 10 classes.
func ForBytes(n int64) Config {
	c := Config{Hidden: 1024, FFN: 4096, Vocab: 8192, Classes: 10, DType: onnxio.Float}
	for c.Layers = 1; 4*c.Params() < n; c.Layers++ {
	}
	return c
}

// Build returns a model of config c in memory. baseSeed fixes the base
// weights; with delta > 0 every entry gets N(0, delta²) noise drawn from
// deltaSeed (a "fine-tune" of the base with the same baseSeed). Each
// tensor's values depend only on the seeds and its name.
func Build(c Config, baseSeed, deltaSeed uint64, delta float64) (*onnxio.Model, error) {
	if c.DType == 0 {
		c.DType = onnxio.Float
	}
	m, specs, err := graph(c)
	if err != nil {
		return nil, err
	}
	for _, s := range specs {
		t, err := s.tensor(c.DType, baseSeed, deltaSeed, delta)
		if err != nil {
			return nil, err
		}
		if err := m.SetInitializer(t); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Write saves the model Build would return to path, generating each tensor
// while it is written (with external data when external is set), so that
// models larger than memory can be made.
func Write(path string, c Config, baseSeed, deltaSeed uint64, delta float64, external bool) error {
	if c.DType == 0 {
		c.DType = onnxio.Float
	}
	m, specs, err := graph(c)
	if err != nil {
		return err
	}
	byName := map[string]spec{}
	for _, s := range specs {
		byName[s.name] = s
	}
	so := &onnxio.SaveOptions{Transform: func(name string, t *onnxio.Tensor) (*onnxio.Tensor, error) {
		s, ok := byName[name]
		if !ok {
			return t, nil
		}
		return s.tensor(c.DType, baseSeed, deltaSeed, delta)
	}}
	if external {
		so.External = onnxio.ExternalAlways
	}
	return m.Save(path, so)
}

// spec describes one float parameter: shape and distribution center+scale·N(0,1).
type spec struct {
	name          string
	scale, center float64
	shape         []int64
}

func fnv(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

func (s spec) tensor(dt onnxio.DType, baseSeed, deltaSeed uint64, delta float64) (*onnxio.Tensor, error) {
	n := int64(1)
	for _, d := range s.shape {
		n *= d
	}
	r := rand.New(rand.NewPCG(baseSeed, fnv(s.name)))
	d := rand.New(rand.NewPCG(deltaSeed, fnv(s.name)^0xde17a))
	v := make([]float32, n)
	for i := range v {
		x := s.center + s.scale*r.NormFloat64()
		if delta > 0 {
			x += delta * d.NormFloat64()
		}
		v[i] = float32(x)
	}
	return onnxio.FromFloat32(s.name, dt, s.shape, v)
}

// graph builds the model's graph with its non-float initializers and
// empty placeholders for the float parameters, which it returns.
func graph(c Config) (*onnxio.Model, []spec, error) {
	m := onnxio.New("synth", 17)
	var nodes []onnxio.Node
	var specs []spec
	h, f := int64(c.Hidden), int64(c.FFN)
	param := func(name string, scale, center float64, shape ...int64) {
		specs = append(specs, spec{name, scale, center, shape})
	}
	node := func(op string, in []string, out string, attrs ...onnxio.Attr) {
		nodes = append(nodes, onnxio.Node{Name: out + "_node", OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs})
	}
	m.AddInput(onnxio.ValueInfo{Name: "ids", DType: onnxio.Int64, Shape: []onnxio.Dim{{Param: "batch"}, {Param: "seq"}}})
	ws := 1 / math.Sqrt(float64(h))
	param("embed", 0.02, 0, int64(c.Vocab), h)
	node("Gather", []string{"embed", "ids"}, "x0")
	param("attn_scale", 0, ws)
	x := "x0"
	for l := range c.Layers {
		p := fmt.Sprintf("l%d.", l)
		for _, s := range []spec{
			{"ln1.g", 0.02, 1, []int64{h}}, {"ln1.b", 0.02, 0, []int64{h}},
			{"q.w", ws, 0, []int64{h, h}}, {"q.b", 0.02, 0, []int64{h}},
			{"k.w", ws, 0, []int64{h, h}}, {"k.b", 0.02, 0, []int64{h}},
			{"v.w", ws, 0, []int64{h, h}}, {"v.b", 0.02, 0, []int64{h}},
			{"o.w", ws, 0, []int64{h, h}}, {"o.b", 0.02, 0, []int64{h}},
			{"ln2.g", 0.02, 1, []int64{h}}, {"ln2.b", 0.02, 0, []int64{h}},
			{"fc1.w", ws, 0, []int64{h, f}}, {"fc1.b", 0.02, 0, []int64{f}},
			{"fc2.w", 1 / math.Sqrt(float64(f)), 0, []int64{f, h}}, {"fc2.b", 0.02, 0, []int64{h}},
		} {
			param(p+s.name, s.scale, s.center, s.shape...)
		}
		node("LayerNormalization", []string{x, p + "ln1.g", p + "ln1.b"}, p+"ln1", onnxio.AttrInt("axis", -1))
		for _, qkv := range []string{"q", "k", "v"} {
			node("MatMul", []string{p + "ln1", p + qkv + ".w"}, p+qkv+".mm")
			node("Add", []string{p + qkv + ".mm", p + qkv + ".b"}, p+qkv)
		}
		node("Transpose", []string{p + "k"}, p+"kT", onnxio.AttrIntList("perm", 0, 2, 1))
		node("MatMul", []string{p + "q", p + "kT"}, p+"scores.raw")
		node("Mul", []string{p + "scores.raw", "attn_scale"}, p+"scores")
		node("Softmax", []string{p + "scores"}, p+"probs", onnxio.AttrInt("axis", -1))
		node("MatMul", []string{p + "probs", p + "v"}, p+"attn")
		node("MatMul", []string{p + "attn", p + "o.w"}, p+"o.mm")
		node("Add", []string{p + "o.mm", p + "o.b"}, p+"o")
		node("Add", []string{x, p + "o"}, p+"res1")
		node("LayerNormalization", []string{p + "res1", p + "ln2.g", p + "ln2.b"}, p+"ln2", onnxio.AttrInt("axis", -1))
		node("MatMul", []string{p + "ln2", p + "fc1.w"}, p+"fc1.mm")
		node("Add", []string{p + "fc1.mm", p + "fc1.b"}, p+"fc1")
		node("Relu", []string{p + "fc1"}, p+"act")
		node("MatMul", []string{p + "act", p + "fc2.w"}, p+"fc2.mm")
		node("Add", []string{p + "fc2.mm", p + "fc2.b"}, p+"fc2")
		node("Add", []string{p + "res1", p + "fc2"}, p+"out")
		x = p + "out"
	}
	param("lnf.g", 0.02, 1, h)
	param("lnf.b", 0.02, 0, h)
	param("cls.w", ws, 0, h, int64(c.Classes))
	for _, s := range specs {
		// placeholder with no elements, replaced by Build or Write
		ph, err := onnxio.NewTensor(s.name, c.DType, []int64{0}, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := m.SetInitializer(ph); err != nil {
			return nil, nil, err
		}
	}
	shape, err := onnxio.FromInt64("out_shape", onnxio.Int64, []int64{2}, []int64{-1, int64(c.Classes)})
	if err != nil {
		return nil, nil, err
	}
	if err := m.SetInitializer(shape); err != nil {
		return nil, nil, err
	}
	node("LayerNormalization", []string{x, "lnf.g", "lnf.b"}, "lnf", onnxio.AttrInt("axis", -1))
	node("MatMul", []string{"lnf", "cls.w"}, "cls")
	node("Reshape", []string{"cls", "out_shape"}, "logits")
	if err := m.InsertNodes(nodes...); err != nil {
		return nil, nil, err
	}
	m.AddOutput(onnxio.ValueInfo{Name: "logits", DType: c.DType, Shape: []onnxio.Dim{{Value: -1}, {Value: int64(c.Classes)}}})
	return m, specs, nil
}
