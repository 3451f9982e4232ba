package evalharness

import (
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/onnxio"
)

// TestFixedBatchOfOne: in a model with no symbolic dimension (exported
// with a batch of 1), an input's batch axis is the one axis where the
// model's dimension is 1 and the array's is not, the inputs must agree on
// the number of samples, and such a model runs with batch size 1
// whatever batch is asked for.
func TestFixedBatchOfOne(t *testing.T) {
	f := func(shape ...int64) *Array {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		return FromFloat32(shape, make([]float32, n))
	}
	in := func(name string, shape ...int64) TensorInfo {
		return TensorInfo{Name: name, DType: onnxio.Float, Shape: shape, DimParams: make([]string, len(shape))}
	}
	akiki := []TensorInfo{in("x", 1, 512), in("h", 1, 1, 128)}
	cases := []struct {
		name   string
		inputs []TensorInfo
		arrays map[string]*Array
		axes   map[string]int
		n      int64
		batch  int64
		err    string
	}{
		{name: "state batched along axis 1", inputs: akiki,
			arrays: map[string]*Array{"x": f(7, 512), "h": f(1, 7, 128)},
			axes:   map[string]int{"x": 0, "h": 1}, n: 7, batch: 1},
		{name: "one sample, exact shapes", inputs: akiki,
			arrays: map[string]*Array{"x": f(1, 512), "h": f(1, 1, 128)},
			axes:   map[string]int{"x": 0, "h": 0}, n: 1, batch: 1},
		{name: "state given once", inputs: akiki,
			arrays: map[string]*Array{"x": f(7, 512), "h": f(1, 1, 128)},
			axes:   map[string]int{"x": 0, "h": -1}, n: 7, batch: 1},
		{name: "sample counts disagree", inputs: akiki,
			arrays: map[string]*Array{"x": f(7, 512), "h": f(1, 6, 128)},
			err:    "arrays disagree on the number of samples"},
		{name: "two axes of size 1 differ", inputs: []TensorInfo{in("x", 1, 512), in("h", 1, 1, 128)},
			arrays: map[string]*Array{"x": f(7, 512), "h": f(7, 7, 128)},
			err:    `array "h" has shape [7 7 128] but model input "h" needs [1,1,128] (axis 1 differs)`},
		{name: "fixed dim other than 1 differs", inputs: akiki,
			arrays: map[string]*Array{"x": f(7, 500), "h": f(1, 7, 128)},
			err:    `array "x" has shape [7 500] but model input "x" needs [1,512] (axis 1 differs)`},
		{name: "symbolic model keeps its batch dimension", inputs: []TensorInfo{
			{Name: "x", DType: onnxio.Float, Shape: []int64{-1, 512}, DimParams: []string{"N", ""}}, in("h", 1, 1, 128)},
			arrays: map[string]*Array{"x": f(7, 512), "h": f(1, 7, 128)},
			err:    `array "h" has shape [1 7 128] but model input "h" needs [1,1,128] (axis 1 differs)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds, err := NewDataset(c.arrays, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = ds.Check(c.inputs)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Check: %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ds.N != c.n {
				t.Errorf("N %d, want %d", ds.N, c.n)
			}
			got := ds.BatchAxes()
			for k, v := range c.axes {
				if got[k] != v {
					t.Errorf("batch axes %v, want %v", got, c.axes)
					break
				}
			}
			if b, err := ds.BatchSize(c.inputs, 64); err != nil || b != c.batch {
				t.Errorf("batch size %d, %v; want %d", b, err, c.batch)
			}
			// a batch is cut along each input's batch axis
			if c.n > 1 {
				b := ds.Batch(2, 3)
				if s := b["h"].Shape; s[1] != 1 || b["x"].Shape[0] != 1 {
					t.Errorf("batch shapes x %v, h %v", b["x"].Shape, s)
				}
			}
		})
	}
}
