package quant

import (
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Activations holds captured activation values (e.g. extra outputs of a
// model run over calibration data) and implements Calibration and
// ActivationStats from them. Values of a tensor are its flattened rows:
// the last axis is the feature axis (K of the consuming MatMul or Gemm).
type Activations struct {
	values  map[string][]float32
	inputOf map[string]string // weight → activation tensor
	k       map[string]int    // weight → reduction size K
	bins    int
}

var (
	_ Calibration     = (*Activations)(nil)
	_ ActivationStats = (*Activations)(nil)
)

// NewActivations indexes values (tensor name → flattened values) for the
// weights of m; bins is the histogram resolution (default 2048).
func NewActivations(m *onnxio.Model, values map[string][]float32, bins int) (*Activations, error) {
	if bins <= 0 {
		bins = 2048
	}
	ws, err := m.Weights()
	if err != nil {
		return nil, err
	}
	a := &Activations{values: values, inputOf: map[string]string{}, k: map[string]int{}, bins: bins}
	nodes := m.Nodes()
	for _, w := range ws {
		if w.Role != onnxio.RoleMatMulB && w.Role != onnxio.RoleGemmB {
			continue
		}
		if w.NodeIndex < 0 || w.NodeIndex >= len(nodes) {
			return nil, fmt.Errorf("weight %s: consumer index %d out of range", w.Name, w.NodeIndex)
		}
		n := nodes[w.NodeIndex]
		a.inputOf[w.Name] = n.Inputs[0]
		a.k[w.Name] = int(w.ReductionSize())
	}
	return a, nil
}

// InputGram returns XᵀX of the activation feeding the MatMul or Gemm that
// consumes weight, with d its last dimension (K).
func (a *Activations) InputGram(weight string) ([]float64, int, int64, error) {
	in, ok := a.inputOf[weight]
	if !ok {
		return nil, 0, 0, fmt.Errorf("%w: %s is not a MatMul or Gemm weight", ErrCalibration, weight)
	}
	x, ok := a.values[in]
	if !ok {
		return nil, 0, 0, fmt.Errorf("%w: activation %s was not captured", ErrCalibration, in)
	}
	d := a.k[weight]
	if d <= 0 || len(x) == 0 || len(x)%d != 0 {
		return nil, 0, 0, fmt.Errorf("%w: activation %s has %d values, not rows of K = %d", ErrCalibration, in, len(x), d)
	}
	g, n := Gram(x, d)
	return g, d, n, nil
}

// Gram returns XᵀX (d×d, float64) of the rows of x (len(x) a multiple of d)
// and the number of rows.
func Gram(x []float32, d int) ([]float64, int64) {
	if d <= 0 || len(x)%d != 0 {
		panic(fmt.Errorf("%w: %d values are not rows of %d", ErrShape, len(x), d))
	}
	g := make([]float64, d*d)
	row := make([]float64, d)
	rows := len(x) / d
	for r := 0; r < rows; r++ {
		for i := range row {
			row[i] = float64(x[r*d+i])
		}
		for i := 0; i < d; i++ {
			ri := row[i]
			if ri == 0 {
				continue
			}
			gi := g[i*d : (i+1)*d]
			for j := i; j < d; j++ {
				gi[j] += ri * row[j]
			}
		}
	}
	for i := 0; i < d; i++ {
		for j := 0; j < i; j++ {
			g[i*d+j] = g[j*d+i]
		}
	}
	return g, int64(rows)
}

// Histogram returns a histogram of x with bins equal-width bins between its
// minimum and maximum (edges has bins+1 entries).
func Histogram(x []float32, bins int) ([]int64, []float64, error) {
	if len(x) == 0 || bins <= 0 {
		return nil, nil, fmt.Errorf("%w: histogram of %d values in %d bins", ErrCalibration, len(x), bins)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, nil, fmt.Errorf("%w: activation value %v", ErrNonFinite, v)
		}
		lo, hi = math.Min(lo, f), math.Max(hi, f)
	}
	edges := make([]float64, bins+1)
	for i := range edges {
		edges[i] = lo + (hi-lo)*float64(i)/float64(bins)
	}
	edges[bins] = hi
	counts := make([]int64, bins)
	w := (hi - lo) / float64(bins)
	for _, v := range x {
		b := 0
		if w > 0 {
			b = min(int((float64(v)-lo)/w), bins-1)
		}
		counts[b]++
	}
	return counts, edges, nil
}

// ActivationHistogram returns the histogram of a captured tensor.
func (a *Activations) ActivationHistogram(tensor string) ([]int64, []float64, error) {
	x, ok := a.values[tensor]
	if !ok {
		return nil, nil, fmt.Errorf("%w: activation %s was not captured", ErrCalibration, tensor)
	}
	return Histogram(x, a.bins)
}
