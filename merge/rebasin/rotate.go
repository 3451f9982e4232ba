package rebasin

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"

	"github.com/onnxpost/onnxpost/internal/linalg"
	"github.com/onnxpost/onnxpost/onnxio"
)

// RotateHeads turns the dimensions of each attention head of m (already
// permuted onto ref by a matching over groups) by the orthogonal map that
// best matches ref's weights, and returns the turned copy and the number
// of heads turned.
//
// A head computes softmax(q·kᵀ) and passes its values v through the output
// projection; replacing q, k by qR, kR and v by vR, the projection's rows o
// by Rᵀo, for any orthogonal R of the head's dimensions, leaves every
// output unchanged (R Rᵀ = I). Permutations are the finite part of that
// symmetry; two models trained from different seeds differ by a continuous
// part as well, which no permutation undoes. For the query/key group and
// the value/output group of each attention block, and each head h, R
// maximizes Σ ⟨A, B R⟩ over the group's member tensors restricted to the
// head's units (orthogonal Procrustes: R = U Vᵀ for C = Bᵀ A = U S Vᵀ);
// along each member's unit axis, unit j of the result is Σᵢ R[i][j]·unit i.
//
// Only groups whose member tensors are read by MatMul, Gemm and Add nodes
// alone are turned (a weight or bias of a linear map commutes with R; a
// per-unit scale would not); other groups keep their units. Unlike
// Permute, the values are recomputed: the copy computes the same function
// up to float rounding. Neither model is modified.
func RotateHeads(ref, m *onnxio.Model, groups []Group) (*onnxio.Model, int, error) {
	other := map[string]bool{} // tensors read by a node other than MatMul, Gemm, Add
	for _, n := range m.Nodes() {
		if n.OpType != "MatMul" && n.OpType != "Gemm" && n.OpType != "Add" {
			for _, in := range n.Inputs {
				other[in] = true
			}
		}
	}
	var turned []Group
	for _, g := range groups {
		if g.Heads < 2 || g.Attention == "" || g.Size%g.Heads != 0 {
			continue
		}
		ok := true
		for _, mb := range g.Members {
			ok = ok && !other[mb.Tensor] && mb.Block == 1
		}
		if ok {
			turned = append(turned, g)
		}
	}
	if len(turned) == 0 {
		return m.Clone(), 0, nil
	}
	da, uses, err := load(ref, turned)
	if err != nil {
		return nil, 0, err
	}
	db, _, err := load(m, turned)
	if err != nil {
		return nil, 0, err
	}
	for name, x := range da {
		if y := db[name]; len(x.v) != len(y.v) {
			return nil, 0, fmt.Errorf("%w: %q has shape %v against %v", ErrIncompatible, name, x.shape, y.shape)
		}
	}
	heads := 0
	for gi, g := range turned {
		hd := g.Size / g.Heads
		for h := 0; h < g.Heads; h++ {
			c := make([]float64, hd*hd) // c[i][j] = Σ B[unit i]·A[unit j]
			for _, mb := range g.Members {
				addBlockCost(c, hd, h*hd, db[mb.Tensor].v, da[mb.Tensor].v, db[mb.Tensor].shape, mb.Axis)
			}
			r, err := procrustes(c, hd)
			if err != nil {
				return nil, 0, fmt.Errorf("group %q, head %d: %w", g.Name, h, err)
			}
			for name, us := range uses {
				for _, u := range us {
					if u.group == gi {
						turnBlock(db[name].v, db[name].shape, u.axis, h*hd, hd, r)
					}
				}
			}
			heads++
		}
	}
	out := m.Clone()
	for name, d := range db {
		t, err := onnxio.FromFloat64(name, d.t.DType, d.shape, d.v)
		if err != nil {
			return nil, 0, err
		}
		if err := out.SetInitializer(t); err != nil {
			return nil, 0, err
		}
	}
	return out, heads, nil
}

// addBlockCost adds c[i, j] += Σ b[unit off+i] · a[unit off+j] over the
// other axes, for the n units from off along axis.
func addBlockCost(c []float64, n, off int, b, a []float64, shape []int64, axis int) {
	outer, length, inner := split(shape, axis)
	for o := 0; o < outer; o++ {
		base := o * length * inner
		for i := 0; i < n; i++ {
			bi := b[base+(off+i)*inner : base+(off+i+1)*inner]
			for j := 0; j < n; j++ {
				aj := a[base+(off+j)*inner : base+(off+j+1)*inner]
				s := 0.0
				for k, x := range bi {
					s += x * aj[k]
				}
				c[i*n+j] += s
			}
		}
	}
}

// turnBlock replaces, in place, units off..off+n of v along axis by
// unit j = Σᵢ r[i][j]·unit i.
func turnBlock(v []float64, shape []int64, axis, off, n int, r []float64) {
	outer, length, inner := split(shape, axis)
	old := make([]float64, n*inner)
	for o := 0; o < outer; o++ {
		base := o*length*inner + off*inner
		copy(old, v[base:base+n*inner])
		for j := 0; j < n; j++ {
			dst := v[base+j*inner : base+(j+1)*inner]
			for k := range dst {
				dst[k] = 0
			}
			for i := 0; i < n; i++ {
				w := r[i*n+j]
				if w == 0 {
					continue
				}
				src := old[i*inner : (i+1)*inner]
				for k, x := range src {
					dst[k] += w * x
				}
			}
		}
	}
}

// procrustes returns the orthogonal n×n matrix R maximizing tr(Rᵀc):
// U Vᵀ for the SVD c = U S Vᵀ.
func procrustes(c []float64, n int) ([]float64, error) {
	for _, x := range c {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("rebasin: non-finite weights")
		}
	}
	a := blas64.General{Rows: n, Cols: n, Stride: n, Data: append([]float64(nil), c...)}
	u := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
	vt := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
	if !linalg.SVD(a, make([]float64, n), u, vt) {
		return nil, fmt.Errorf("rebasin: SVD did not converge")
	}
	r := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for k := 0; k < n; k++ {
				s += u.Data[i*n+k] * vt.Data[k*n+j]
			}
			r[i*n+j] = s
		}
	}
	return r, nil
}
