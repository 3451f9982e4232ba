package onnxio_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Load a model and look at its graph and parameters.
func ExampleLoad() {
	m, err := onnxio.Load(filepath.Join("testdata", "kitchen.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("opset", m.Opsets()[""], "nodes", m.NumNodes(), "initializers", len(m.Initializers()))
	w, err := m.Initializer("W1")
	if err != nil {
		log.Fatal(err)
	}
	v, err := w.Float32()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Name, w.DType, w.Shape, len(v))
	// Output:
	// opset 21 nodes 19 initializers 23
	// W1 float32 [8 16] 128
}

// Weights tells, for every parameter, the op that consumes it, its role and
// which axis holds output units and which the reduction.
func ExampleModel_Weights() {
	m, err := onnxio.Load(filepath.Join("testdata", "kitchen.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	ws, err := m.Weights()
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
			fmt.Printf("%-3s %-8s %v out axis %d, K=%d via %v\n", w.Name, w.Role, w.Shape, w.OutAxis, w.ReductionSize(), w.Via)
		}
	}
	// Output:
	// W1  MatMul.B [8 16] out axis 1, K=8 via []
	// W2  Gemm.B   [4 16] out axis 0, K=16 via []
	// W3  Gemm.B   [4 6] out axis 1, K=4 via []
	// cW  MatMul.B [6 6] out axis 1, K=6 via []
	// Wt  MatMul.B [5 6] out axis 0, K=6 via [Transpose]
	// Wh  MatMul.B [5 5] out axis 1, K=5 via [Cast]
	// Wq  MatMul.B [5 3] out axis 1, K=5 via [DequantizeLinear]
	// Wi  MatMul.B [3 3] out axis 1, K=3 via [Identity]
	// Wc  Conv.W   [8 2 3 3] out axis 0, K=18 via []
}

// Save writes atomically, inline or with external data; a Transform
// rewrites tensors as they stream to disk.
func ExampleModel_Save() {
	m, err := onnxio.Load(filepath.Join("testdata", "kitchen.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "onnxio-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// halve W1 and store every tensor of 64 bytes or more in out.onnx.data
	half := func(name string, t *onnxio.Tensor) (*onnxio.Tensor, error) {
		if name != "W1" {
			return t, nil
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		for i := range v {
			v[i] /= 2
		}
		return onnxio.FromFloat32(name, t.DType, t.Shape, v)
	}
	out := filepath.Join(dir, "out.onnx")
	err = m.Save(out, &onnxio.SaveOptions{External: onnxio.ExternalAlways, Threshold: 64, Transform: half})
	if err != nil {
		log.Fatal(err)
	}
	back, err := onnxio.Load(out)
	if err != nil {
		log.Fatal(err)
	}
	a, _ := m.Initializer("W1")
	b, _ := back.Initializer("W1")
	av, _ := a.Float32()
	bv, _ := b.Float32()
	fmt.Println(back.IsExternal("W1"), back.IsExternal("b1"), bv[0] == av[0]/2)
	// Output: true true true
}

// Match pairs the tensors of two exports of one architecture by graph
// position, whatever their names.
func ExampleMatch() {
	a, err := onnxio.Load(filepath.Join("testdata", "kitchen.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	b := a.Clone()
	pairs, err := onnxio.Match(a, b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(pairs), pairs[0].A, pairs[0].B, pairs[0].Shape)
	// Output: 23 W1 W1 [8 16]
}

// Float16 conversion rounds to nearest even.
func ExampleFromFloat32() {
	t, err := onnxio.FromFloat32("x", onnxio.Float16, []int64{3}, []float32{1.0009766, 1.0004883, 70000})
	if err != nil {
		log.Fatal(err)
	}
	v, _ := t.Float32()
	fmt.Println(v)
	// Output: [1.0009766 1 +Inf]
}
