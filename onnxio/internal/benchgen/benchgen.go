// Package benchgen builds the large models onnxio's benchmarks load and save:
// transformer-shaped stacks of float32 MatMul weights with external data,
// generated with onnxio itself while streaming to disk (so generating a
// 1 GB model holds only a few tensors in memory).
package benchgen

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Shape describes the model: Layers blocks of hidden size D, each with
// q, k, v, o [D,D] and ff1 [D,4D], ff2 [4D,D] MatMul weights, their biases
// and two LayerNormalization scales and biases (BERT-style; D=1024 and 24
// layers is BERT-large, 1.2 GB of float32).
type Shape struct {
	Layers, D int
}

// Bytes returns the size of the model's tensor data.
func (s Shape) Bytes() int64 {
	d := int64(s.D)
	perLayer := 4*d*d + 2*4*d*d + 4*d + 4*d + d + 4*d // weights, q/k/v/o biases, ff1/ff2 biases, 2 LN × 2
	return 4 * int64(s.Layers) * perLayer
}

type weight struct {
	name  string
	shape []int64
}

func (s Shape) weights() []weight {
	d, f := int64(s.D), int64(4*s.D)
	var ws []weight
	for l := 0; l < s.Layers; l++ {
		p := "layers." + strconv.Itoa(l) + "."
		ws = append(ws,
			weight{p + "ln1.weight", []int64{d}}, weight{p + "ln1.bias", []int64{d}},
			weight{p + "q.weight", []int64{d, d}}, weight{p + "q.bias", []int64{d}},
			weight{p + "k.weight", []int64{d, d}}, weight{p + "k.bias", []int64{d}},
			weight{p + "v.weight", []int64{d, d}}, weight{p + "v.bias", []int64{d}},
			weight{p + "o.weight", []int64{d, d}}, weight{p + "o.bias", []int64{d}},
			weight{p + "ln2.weight", []int64{d}}, weight{p + "ln2.bias", []int64{d}},
			weight{p + "ff1.weight", []int64{d, f}}, weight{p + "ff1.bias", []int64{f}},
			weight{p + "ff2.weight", []int64{f, d}}, weight{p + "ff2.bias", []int64{d}},
		)
	}
	return ws
}

// Generate writes dir/model.onnx with its tensors in dir/model.onnx.data and
// returns the model's path. The graph chains the layers (LayerNorm, then
// MatMul+Add for q, k, v, o, LayerNorm, ff1, ff2) so that Weights and Match
// see a realistic structure.
func Generate(dir string, s Shape, seed uint64) (string, error) {
	m := onnxio.New("bench", 21)
	shapes := map[string][]int64{}
	for _, w := range s.weights() {
		shapes[w.name] = w.shape
		// a one-element placeholder; Save's Transform writes the real tensor
		t, err := onnxio.FromFloat32(w.name, onnxio.Float, []int64{1}, []float32{0})
		if err != nil {
			return "", err
		}
		if err := m.SetInitializer(t); err != nil {
			return "", err
		}
	}
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "batch"}, {Value: int64(s.D)}}})
	var nodes []onnxio.Node
	h := "x"
	next := func(op, name string, in ...string) {
		out := name + ".out"
		nodes = append(nodes, onnxio.Node{Name: name, OpType: op, Inputs: append([]string{h}, in...), Outputs: []string{out}})
		h = out
	}
	for l := 0; l < s.Layers; l++ {
		p := "layers." + strconv.Itoa(l) + "."
		next("LayerNormalization", p+"ln1", p+"ln1.weight", p+"ln1.bias")
		for _, lin := range []string{"q", "k", "v", "o"} {
			next("MatMul", p+lin, p+lin+".weight")
			next("Add", p+lin+".add", p+lin+".bias")
		}
		next("LayerNormalization", p+"ln2", p+"ln2.weight", p+"ln2.bias")
		for _, lin := range []string{"ff1", "ff2"} {
			next("MatMul", p+lin, p+lin+".weight")
			next("Add", p+lin+".add", p+lin+".bias")
		}
	}
	if err := m.InsertNodes(nodes...); err != nil {
		return "", err
	}
	m.AddOutput(onnxio.ValueInfo{Name: h, DType: onnxio.Float})
	fill := func(name string, _ *onnxio.Tensor) (*onnxio.Tensor, error) {
		shape := shapes[name]
		n, err := onnxio.NumElements(shape)
		if err != nil {
			return nil, err
		}
		raw := make([]byte, 4*n)
		x := seed ^ hash(name)
		for i := int64(0); i < n; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			v := float32(int32(x>>32)) / (1 << 31) * 0.05
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
		return onnxio.NewTensor(name, onnxio.Float, shape, raw)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := m.Save(path, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Transform: fill}); err != nil {
		return "", err
	}
	return path, nil
}

func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h | 1
}

// CopyModel copies the model at src and its data file into dstDir with
// io.Copy between files (copy_file_range on Linux) and fsyncs the copies:
// the cost model Save is measured against. It returns the bytes copied.
func CopyModel(src, dstDir string) (int64, error) {
	var total int64
	files := []string{src}
	locs, err := onnxio.DataFiles(src)
	if err != nil {
		return 0, err
	}
	for _, l := range locs {
		files = append(files, filepath.Join(filepath.Dir(src), l))
	}
	for _, f := range files {
		n, err := copyFile(f, filepath.Join(dstDir, filepath.Base(f)))
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// LoadSave loads src and saves it unchanged to dst with external data. With
// transform, every tensor goes through an identity Transform, which makes
// Save read each tensor into memory instead of copying file ranges.
func LoadSave(src, dst string, transform bool) error {
	m, err := onnxio.Load(src)
	if err != nil {
		return err
	}
	opts := &onnxio.SaveOptions{External: onnxio.ExternalAlways}
	if transform {
		opts.Transform = func(_ string, t *onnxio.Tensor) (*onnxio.Tensor, error) { return t, nil }
	}
	if err := m.Save(dst, opts); err != nil {
		return fmt.Errorf("save %s: %w", dst, err)
	}
	return nil
}

// LoadSaveDefault loads src and saves it unchanged to dst with default
// options (ExternalAuto).
func LoadSaveDefault(src, dst string) error {
	m, err := onnxio.Load(src)
	if err != nil {
		return err
	}
	return m.Save(dst, nil)
}
