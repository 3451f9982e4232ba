package sparsity

import "fmt"

// Layout names how a weight tensor maps onto output units and the reduction
// axis.
type Layout string

// The supported layouts.
const (
	// LayoutKN is MatMul's B or Gemm's B with transB=0: [K, N], reduction K,
	// output units N.
	LayoutKN Layout = "KN"
	// LayoutNK is Gemm's B with transB=1: [N, K].
	LayoutNK Layout = "NK"
	// LayoutConv is a Conv weight [O, C/g, kh, ...]: reduction over C/g and
	// the kernel, N:M groups along C/g for each (o, kernel position).
	LayoutConv Layout = "OIHW"
)

// Shape is a weight seen as a matrix: Rows output units of Cols reduction
// entries (in XᵀX order), with the members of an N:M group Stride columns
// apart (1 for MatMul/Gemm, the kernel size for Conv).
type Shape struct {
	Rows, Cols, Stride int
}

// ShapeOf returns the matrix view of a tensor of the given layout and dims.
func ShapeOf(l Layout, dims []int64) (Shape, error) {
	for _, d := range dims {
		if d <= 0 {
			return Shape{}, fmt.Errorf("sparsity: layout %s: dims %v must be positive", l, dims)
		}
	}
	switch l {
	case LayoutKN:
		if len(dims) != 2 {
			return Shape{}, fmt.Errorf("sparsity: layout KN needs 2 dims, got %v", dims)
		}
		return Shape{Rows: int(dims[1]), Cols: int(dims[0]), Stride: 1}, nil
	case LayoutNK:
		if len(dims) != 2 {
			return Shape{}, fmt.Errorf("sparsity: layout NK needs 2 dims, got %v", dims)
		}
		return Shape{Rows: int(dims[0]), Cols: int(dims[1]), Stride: 1}, nil
	case LayoutConv:
		if len(dims) < 3 {
			return Shape{}, fmt.Errorf("sparsity: conv layout needs >= 3 dims, got %v", dims)
		}
		k := 1
		for _, d := range dims[2:] {
			k *= int(d)
		}
		return Shape{Rows: int(dims[0]), Cols: int(dims[1]) * k, Stride: k}, nil
	}
	return Shape{}, fmt.Errorf("sparsity: unknown layout %q", l)
}

// Len is Rows·Cols.
func (s Shape) Len() int { return s.Rows * s.Cols }

// Reduction is the length of the axis that N:M groups run along: Cols/Stride
// (K for MatMul/Gemm, C/g for Conv).
func (s Shape) Reduction() int { return s.Cols / s.Stride }

// Fits reports whether N:M groups of size m tile the reduction axis.
func (s Shape) Fits(m int) bool { return m > 0 && s.Reduction()%m == 0 }

// ToMatrix returns the Rows×Cols row-major matrix view of tensor data of
// layout l (a copy; data is not modified).
func ToMatrix(data []float32, l Layout, dims []int64) ([]float32, Shape, error) {
	sh, err := ShapeOf(l, dims)
	if err != nil {
		return nil, sh, err
	}
	if len(data) != sh.Len() {
		return nil, sh, fmt.Errorf("sparsity: %d values for dims %v", len(data), dims)
	}
	out := make([]float32, len(data))
	if l == LayoutKN {
		transpose(out, data, sh.Cols, sh.Rows)
	} else {
		copy(out, data)
	}
	return out, sh, nil
}

// FromMatrix is the inverse of ToMatrix: it returns tensor data of layout l
// from a Rows×Cols matrix.
func FromMatrix(m []float32, l Layout, sh Shape) []float32 {
	out := make([]float32, len(m))
	if l == LayoutKN {
		transpose(out, m, sh.Rows, sh.Cols)
	} else {
		copy(out, m)
	}
	return out
}

// transpose writes the c×r transpose of the r×c row-major src into dst.
func transpose(dst, src []float32, r, c int) {
	const b = 32
	for i0 := 0; i0 < r; i0 += b {
		for j0 := 0; j0 < c; j0 += b {
			for i := i0; i < min(i0+b, r); i++ {
				for j := j0; j < min(j0+b, c); j++ {
					dst[j*r+i] = src[i*c+j]
				}
			}
		}
	}
}

// groupOrder returns, for a Shape with Stride > 1, the column permutation
// that makes N:M groups consecutive: perm[q] is the original column of
// permuted column q, ordered by kernel position then channel. It returns nil
// when Stride is 1 (the identity).
func groupOrder(sh Shape) []int {
	if sh.Stride == 1 {
		return nil
	}
	c := sh.Reduction()
	perm := make([]int, sh.Cols)
	for s := 0; s < sh.Stride; s++ {
		for ch := 0; ch < c; ch++ {
			perm[s*c+ch] = ch*sh.Stride + s
		}
	}
	return perm
}
