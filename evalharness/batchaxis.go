package evalharness

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/onnxio"
)

// fixedAxis marks, during Check, an input whose every dimension is fixed
// and whose array has exactly that shape: it is fed whole when another
// input carries the batch axis, else batched along axis 0.
const fixedAxis = -2

// paramsOf returns the symbolic name of each dimension ("" when fixed or
// unnamed), or nil when the rank is unknown.
func paramsOf(ds []onnxio.Dim) []string {
	if ds == nil {
		return nil
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Param
	}
	return out
}

// isInteger reports whether d is a signed or unsigned integer type.
func isInteger(d onnxio.DType) bool {
	switch d {
	case onnxio.Int8, onnxio.Int16, onnxio.Int32, onnxio.Int64,
		onnxio.Uint8, onnxio.Uint16, onnxio.Uint32, onnxio.Uint64:
		return true
	}
	return false
}

// isFloat reports whether d is a floating-point type.
func isFloat(d onnxio.DType) bool {
	switch d {
	case onnxio.Float, onnxio.Double, onnxio.Float16, onnxio.BFloat16:
		return true
	}
	return false
}

// batchDimParam returns the batch dimension's symbolic name: the dim_param
// most inputs carry on axis 0 ("" when none does).
func batchDimParam(inputs []TensorInfo) string {
	count := map[string]int{}
	best := ""
	for _, in := range inputs {
		if len(in.DimParams) > 0 && in.DimParams[0] != "" {
			p := in.DimParams[0]
			count[p]++
			if count[p] > count[best] || best == "" {
				best = p
			}
		}
	}
	return best
}

// anySymbolic reports whether some input has a symbolic or unknown
// dimension (or an unknown rank).
func anySymbolic(inputs []TensorInfo) bool {
	for _, in := range inputs {
		if in.Shape == nil || slices.ContainsFunc(in.Shape, func(d int64) bool { return d < 0 }) {
			return true
		}
	}
	return false
}

// batchAxis returns the batch axis of input in for its dataset array a:
// the axis whose dim_param is the batch dimension's, else the only
// symbolic axis, else axis 0 when that one is symbolic; -1 for a scalar
// or an input with no symbolic axis given at its exact shape (fixedAxis,
// resolved by Check). In a model with no symbolic dimension at all
// (fixed, a model exported with a batch of 1), it is the one axis where
// the model's dimension is 1 and the array's is not (a state [1, 1, 128]
// given as [1, N, 128]); Check then verifies that the inputs agree on the
// number of samples. 0 otherwise.
func batchAxis(in TensorInfo, a *Array, param string, fixed bool) int {
	if len(in.Shape) == 0 {
		return -1
	}
	if param != "" {
		for k, p := range in.DimParams {
			if p == param {
				return k
			}
		}
	}
	var sym []int
	for k, d := range in.Shape {
		if d < 0 {
			sym = append(sym, k)
		}
	}
	switch {
	case len(sym) == 1:
		return sym[0]
	case len(sym) > 1:
		if in.Shape[0] < 0 {
			return 0
		}
		return sym[0]
	case slices.Equal(a.Shape, in.Shape):
		return fixedAxis
	case fixed && len(a.Shape) == len(in.Shape):
		ax := -1
		for k, d := range in.Shape {
			if d == 1 && a.Shape[k] != 1 {
				if ax >= 0 {
					return 0 // two candidates: Check reports the shape
				}
				ax = k
			}
		}
		if ax >= 0 {
			return ax
		}
	}
	return 0
}

// BatchAxes returns each input's batch axis as Check found it (-1 for an
// input fed whole to every batch); nil before Check.
func (d *Dataset) BatchAxes() map[string]int {
	if d.axes == nil {
		return nil
	}
	out := make(map[string]int, len(d.axes))
	for k, v := range d.axes {
		out[k] = v
	}
	return out
}

// OutputBatchAxis returns the batch axis of a model output after Check:
// the axis named like the inputs' batch dimension (a state output
// [2, N, 128] of an axis-1-batched state), else 0.
func (d *Dataset) OutputBatchAxis(o TensorInfo) int {
	if d.batchParam != "" {
		for k, p := range o.DimParams {
			if p == d.batchParam {
				return k
			}
		}
	}
	return 0
}

// outputAxis returns the batch axis of output k of outs (0 when outs does
// not describe it).
func (d *Dataset) outputAxis(outs []TensorInfo, k int) int {
	if k >= len(outs) {
		return 0
	}
	return d.OutputBatchAxis(outs[k])
}

// concatOutput joins one output's per-batch parts along its batch axis ax.
func concatOutput(parts []*Array, ax int) (*Array, error) {
	if ax == 0 || len(parts) == 0 {
		return Concat(parts)
	}
	first := parts[0]
	for _, p := range parts {
		ok := p.DType == first.DType && len(p.Shape) == len(first.Shape) && len(p.Shape) > ax
		for k := 0; ok && k < len(p.Shape); k++ {
			ok = k == ax || p.Shape[k] == first.Shape[k]
		}
		if !ok {
			return nil, fmt.Errorf("%w: cannot concatenate %v%v with %v%v along axis %d", ErrArray, first.DType, first.Shape, p.DType, p.Shape, ax)
		}
	}
	return concatAxis(parts, ax), nil
}

// sliceAxis returns [i, j) along axis ax as a new array.
func (a *Array) sliceAxis(ax int, i, j int64) *Array {
	if ax == 0 {
		return a.Slice(i, j)
	}
	if ax >= len(a.Shape) || i < 0 || j < i || j > a.Shape[ax] {
		panic(fmt.Sprintf("evalharness: sliceAxis(%d, %d, %d) of shape %v", ax, i, j, a.Shape))
	}
	outer := int64(1)
	for _, d := range a.Shape[:ax] {
		outer *= d
	}
	inner := int64(ElemSize(a.DType))
	for _, d := range a.Shape[ax+1:] {
		inner *= d
	}
	dim := a.Shape[ax]
	data := make([]byte, 0, outer*(j-i)*inner)
	for o := int64(0); o < outer; o++ {
		data = append(data, a.Data[(o*dim+i)*inner:(o*dim+j)*inner]...)
	}
	shape := append([]int64(nil), a.Shape...)
	shape[ax] = j - i
	return &Array{DType: a.DType, Shape: shape, Data: data}
}

// derivable reports whether a model input the dataset lacks is one that
// decoders as exporters write them take a default for: the cache inputs
// past_key_values.* (fed empty), the merged decoder's use_cache_branch
// (fed false: the branch without a cache), and position_ids when the
// dataset has an attention_mask to derive them from.
func derivable(in TensorInfo, haveMask bool) bool {
	switch {
	case strings.HasPrefix(in.Name, "past_key_values"):
		return true
	case in.Name == "use_cache_branch":
		return in.DType == onnxio.Bool
	case in.Name == "position_ids":
		return haveMask
	}
	return false
}

// deriveInput builds an input the dataset lacks for a batch of n samples:
// position_ids from attention_mask (cumulative sum − 1, 1 at padding),
// use_cache_branch false (its declared shape, 1 on symbolic axes), or an
// empty past_key_values tensor (n on its batch axis, 0 on its other
// symbolic axes); param is the batch dimension's name.
func deriveInput(in TensorInfo, batch map[string]*Array, n int64, param string) *Array {
	if in.Name == "use_cache_branch" {
		shape := make([]int64, len(in.Shape))
		size := int64(1)
		for k, d := range in.Shape {
			shape[k] = max(d, 1)
			size *= shape[k]
		}
		return &Array{DType: onnxio.Bool, Shape: shape, Data: make([]byte, size)}
	}
	if in.Name == "position_ids" {
		mask := batch["attention_mask"]
		mv, err := mask.Int64()
		if err != nil || len(mask.Shape) != 2 {
			return mask // Run reports the mismatch
		}
		pos := make([]int64, len(mv))
		t := int(mask.Shape[1])
		for r := 0; r < int(mask.Shape[0]); r++ {
			c := int64(0)
			for k := 0; k < t; k++ {
				c += mv[r*t+k]
				if mv[r*t+k] == 0 {
					pos[r*t+k] = 1
				} else {
					pos[r*t+k] = c - 1
				}
			}
		}
		return intArray(in.DType, mask.Shape, pos)
	}
	// the batch axis: the one named like the other inputs' batch
	// dimension, else the first symbolic one; other symbolic axes are 0
	ax := -1
	for k, p := range in.DimParams {
		if p != "" && p == param {
			ax = k
		}
	}
	shape := make([]int64, len(in.Shape))
	for k, d := range in.Shape {
		switch {
		case d >= 0:
			shape[k] = d
		case ax < 0 || ax == k:
			shape[k], ax = n, k
		}
	}
	es := ElemSize(in.DType)
	size := int64(es)
	for _, d := range shape {
		size *= d
	}
	return &Array{DType: in.DType, Shape: shape, Data: make([]byte, size)}
}

// intArray encodes v as an int32 or int64 array.
func intArray(dt onnxio.DType, shape []int64, v []int64) *Array {
	if dt == onnxio.Int32 {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(x)))
		}
		return &Array{DType: dt, Shape: append([]int64(nil), shape...), Data: b}
	}
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return &Array{DType: onnxio.Int64, Shape: append([]int64(nil), shape...), Data: b}
}

// Rows returns the samples idx (in that order) of every input, gathered
// along each input's batch axis (see Batch; inputs without one whole), as
// new arrays, plus the derived inputs.
func (d *Dataset) Rows(idx []int) map[string]*Array {
	out := make(map[string]*Array, len(d.Inputs)+len(d.derived))
	for n, a := range d.Inputs {
		ax, ok := d.axes[n]
		if ok && ax < 0 {
			out[n] = a
			continue
		}
		parts := make([]*Array, len(idx))
		for k, i := range idx {
			parts[k] = a.sliceAxis(max(ax, 0), int64(i), int64(i)+1)
		}
		out[n] = concatAxis(parts, max(ax, 0))
	}
	for _, in := range d.derived {
		out[in.Name] = deriveInput(in, out, int64(len(idx)), d.batchParam)
	}
	return out
}

// concatAxis joins arrays that differ only along axis ax.
func concatAxis(parts []*Array, ax int) *Array {
	first := parts[0]
	outer := int64(1)
	for _, d := range first.Shape[:ax] {
		outer *= d
	}
	inner := int64(ElemSize(first.DType))
	for _, d := range first.Shape[ax+1:] {
		inner *= d
	}
	total := int64(0)
	for _, p := range parts {
		total += p.Shape[ax]
	}
	data := make([]byte, 0, outer*total*inner)
	for o := int64(0); o < outer; o++ {
		for _, p := range parts {
			w := p.Shape[ax] * inner
			data = append(data, p.Data[o*w:(o+1)*w]...)
		}
	}
	shape := append([]int64(nil), first.Shape...)
	shape[ax] = total
	return &Array{DType: first.DType, Shape: shape, Data: data}
}

// TokenMask returns the attention_mask of samples [i, j) as one flag per
// token position, sample-major (n·T flags for an [N, T] mask), or nil when
// the dataset has no integer [N, T] attention_mask array. Calibration uses
// it to leave padded positions out of activation statistics (KeepRows).
func (d *Dataset) TokenMask(i, j int64) []bool {
	a, ok := d.Inputs["attention_mask"]
	if !ok || len(a.Shape) != 2 || !isInteger(a.DType) || i < 0 || j < i || j > a.Shape[0] {
		return nil
	}
	v, err := a.Slice(i, j).Int64()
	if err != nil {
		return nil
	}
	out := make([]bool, len(v))
	for k, x := range v {
		out[k] = x != 0
	}
	return out
}

// KeepRows views x of the given shape as rows along its last axis and
// returns the rows whose token position mask keeps (calib.KeepRows, which
// the capture applies to row activations).
func KeepRows[T float32 | float64](x []T, shape []int64, mask []bool) ([]T, []int64) {
	return calib.KeepRows(x, shape, mask)
}
