package calib

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// Gram accumulates XᵀX (d×d, float64) over rows of X streamed in batches,
// or only its diagonal (NormsOnly). It is onnxpost's one Gram
// implementation: the capture, the in-memory calibration and GramOf all
// accumulate through it. The upper triangle is accumulated (one BLAS syrk
// per batch, gonum's pure-Go kernel so results do not depend on the linear
// algebra backend) and mirrored by Matrix.
type Gram struct {
	d     int
	norms bool      // only the diagonal
	xtx   []float64 // d×d upper triangle, or d diagonal entries
	n     int64
}

// NewGram returns an empty accumulator of XᵀX for rows of length d.
func NewGram(d int) *Gram { return &Gram{d: d, xtx: make([]float64, d*d)} }

// NewNorms returns an empty accumulator of the diagonal of XᵀX only
// (Σ_r x_rj², d float64s).
func NewNorms(d int) *Gram { return &Gram{d: d, norms: true, xtx: make([]float64, d)} }

// D returns the row length.
func (g *Gram) D() int { return g.d }

// N returns the number of rows accumulated.
func (g *Gram) N() int64 { return g.n }

// NormsOnly reports whether only the diagonal is accumulated.
func (g *Gram) NormsOnly() bool { return g.norms }

// AddRows accumulates the rows of x (row-major, len(x) a multiple of d).
func (g *Gram) AddRows(x []float64) {
	rows := len(x) / g.d
	if rows == 0 {
		return
	}
	if g.norms {
		// the diagonal in syrk's own order (row after row into the running
		// sum; the conversion keeps the product from being fused), so it
		// is bit-identical to Matrix's diagonal
		for r := 0; r < rows; r++ {
			for j, v := range x[r*g.d : (r+1)*g.d] {
				g.xtx[j] += float64(v * v)
			}
		}
	} else {
		blas64.Syrk(blas.Trans, 1, blas64.General{Rows: rows, Cols: g.d, Stride: g.d, Data: x}, 1,
			blas64.Symmetric{Uplo: blas.Upper, N: g.d, Stride: g.d, Data: g.xtx})
	}
	g.n += int64(rows)
}

// AddColumns accumulates the columns of the d×m matrix a (row-major) as m
// rows: XᵀX = A·Aᵀ (Gemm with transA). The columns are transposed, a chunk
// at a time, and accumulated as AddRows does, row after row into the
// running sums, so the result does not depend on how the columns are cut
// into batches.
func (g *Gram) AddColumns(a []float64, m int) {
	const chunk = 256
	buf := make([]float64, min(m, chunk)*g.d)
	for c0 := 0; c0 < m; c0 += chunk {
		n := min(chunk, m-c0)
		for r := 0; r < n; r++ {
			row := buf[r*g.d : (r+1)*g.d]
			for j := range row {
				row[j] = a[j*m+c0+r]
			}
		}
		g.AddRows(buf[:n*g.d])
	}
}

// Matrix returns a copy of XᵀX, both triangles filled. It panics on a
// NormsOnly accumulator.
func (g *Gram) Matrix() []float64 {
	if g.norms {
		panic("calib: Matrix of a norms-only Gram")
	}
	return g.mirror(append([]float64(nil), g.xtx...))
}

// take returns XᵀX with both triangles filled in the accumulator's own
// storage, without a copy, and leaves g empty (its caller forgets g). It
// panics on a NormsOnly accumulator.
func (g *Gram) take() []float64 {
	if g.norms {
		panic("calib: Matrix of a norms-only Gram")
	}
	out := g.xtx
	g.xtx = nil
	return g.mirror(out)
}

// mirror copies the upper triangle of the d×d out onto its lower one.
func (g *Gram) mirror(out []float64) []float64 {
	for i := 0; i < g.d; i++ {
		for j := i + 1; j < g.d; j++ {
			out[j*g.d+i] = out[i*g.d+j]
		}
	}
	return out
}

// Diagonal returns a copy of the diagonal of XᵀX.
func (g *Gram) Diagonal() []float64 {
	if g.norms {
		return append([]float64(nil), g.xtx...)
	}
	out := make([]float64, g.d)
	for i := range out {
		out[i] = g.xtx[i*g.d+i]
	}
	return out
}

// GramOf returns XᵀX (d×d, float64) of the rows of x (len(x) a multiple of
// d) and the number of rows, accumulated in chunks of 256 rows. x must be
// finite (ErrNonFinite otherwise).
func GramOf(x []float32, d int) ([]float64, int64, error) {
	if d <= 0 || len(x)%d != 0 {
		return nil, 0, fmt.Errorf("%w: %d values are not rows of %d", ErrUnsupported, len(x), d)
	}
	g := NewGram(d)
	const chunk = 256
	buf := make([]float64, chunk*d)
	for r0 := 0; r0 < len(x); r0 += chunk * d {
		part := x[r0:min(r0+chunk*d, len(x))]
		for i, v := range part {
			f := float64(v)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, 0, fmt.Errorf("%w: value %v at %d", ErrNonFinite, v, r0+i)
			}
			buf[i] = f
		}
		g.AddRows(buf[:len(part)])
	}
	return g.Matrix(), g.n, nil
}
