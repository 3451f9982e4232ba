package sparsity

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Activation is a captured tensor: its shape and values (row-major).
type Activation struct {
	Shape []int64
	Data  []float32
}

// Captured implements Calibration from activations captured on calibration
// data (the input tensor of each pruned node, e.g. as extra outputs of an
// ONNX Runtime session): XᵀX over the rows of X for MatMul and Gemm
// (transA-aware), and over the im2col patches of 2-D Conv inputs (pads,
// strides, dilations and auto_pad honoured; with group > 1 the patches of
// all groups are pooled, since one XᵀX serves all output channels).
type Captured struct {
	nodes map[string]onnxio.Node // weight → consuming node
	acts  map[string]Activation
	dims  map[string][]int64 // weight → weight dims
}

var _ Calibration = (*Captured)(nil)

// ActivationTensors returns the names of the tensors to capture for the
// weights of m that PruneModel would prune with sel: the data input of each
// consuming node.
func ActivationTensors(m *onnxio.Model, sel Selection) ([]string, error) {
	layers, _, err := Candidates(m, sel)
	if err != nil {
		return nil, err
	}
	ws, err := m.WeightMap()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range layers {
		n, err := m.Node(ws[l.Name].Node)
		if err != nil {
			return nil, err
		}
		if x := n.Input(0); !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out, nil
}

// ErrNonFinite reports calibration activations holding NaN or ±Inf: XᵀX
// would carry them into every score and update.
var ErrNonFinite = errors.New("sparsity: non-finite calibration activations")

// NewCaptured indexes activations (tensor name → captured values) for the
// weights of m.
func NewCaptured(m *onnxio.Model, acts map[string]Activation) (*Captured, error) {
	ws, err := m.Weights()
	if err != nil {
		return nil, err
	}
	c := &Captured{nodes: map[string]onnxio.Node{}, acts: acts, dims: map[string][]int64{}}
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
		default:
			continue
		}
		n, err := m.Node(w.Node)
		if err != nil {
			return nil, err
		}
		c.nodes[w.Name] = n
		c.dims[w.Name] = w.Shape
	}
	return c, nil
}

// InputGram returns XᵀX of the input of the node consuming weight (see
// Calibration).
func (c *Captured) InputGram(weight string) ([]float64, int, int64, error) {
	n, ok := c.nodes[weight]
	if !ok {
		return nil, 0, 0, fmt.Errorf("%s is not a MatMul, Gemm or Conv weight", weight)
	}
	a, ok := c.acts[n.Input(0)]
	if !ok {
		return nil, 0, 0, fmt.Errorf("activation %s of node %s was not captured", n.Input(0), n.Name)
	}
	size := int64(1)
	for _, d := range a.Shape {
		size *= d
	}
	if size != int64(len(a.Data)) || len(a.Shape) == 0 || a.Shape[len(a.Shape)-1] <= 0 {
		return nil, 0, 0, fmt.Errorf("activation %s: %d values for shape %v", n.Input(0), len(a.Data), a.Shape)
	}
	for i, v := range a.Data {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, 0, 0, fmt.Errorf("%w: activation %s of node %s holds %v (element %d); calibration needs finite activations (do the calibration inputs hold Inf, NaN or values near the float32 limit?)", ErrNonFinite, n.Input(0), n.Name, v, i)
		}
	}
	wd := c.dims[weight]
	switch n.OpType {
	case "Conv":
		return convGram(a, wd, n)
	case "Gemm":
		if n.Int("transA", 0) != 0 {
			if len(a.Shape) != 2 {
				return nil, 0, 0, fmt.Errorf("gemm input %v", a.Shape)
			}
			k, m := int(a.Shape[0]), int(a.Shape[1])
			t := make([]float32, len(a.Data))
			transpose(t, a.Data, k, m)
			g, rows := Gram(t, k)
			return g, k, rows, nil
		}
	}
	k := int(a.Shape[len(a.Shape)-1])
	g, rows := Gram(a.Data, k)
	return g, k, rows, nil
}

// Gram returns XᵀX (d×d, float64) of the rows of x (len(x) a multiple of d)
// and the number of rows.
func Gram(x []float32, d int) ([]float64, int64) {
	rows := len(x) / d
	g := make([]float64, d*d)
	const chunk = 256
	buf := make([]float64, chunk*d)
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(r0+chunk, rows)
		for i, v := range x[r0*d : r1*d] {
			buf[i] = float64(v)
		}
		syrkAdd(g, buf[:(r1-r0)*d], r1-r0, d)
	}
	symmetrize(g, d)
	return g, int64(rows)
}

// syrkAdd adds PᵀP (upper triangle) of the rows×d matrix p to g.
func syrkAdd(g, p []float64, rows, d int) {
	blas64.Syrk(blas.Trans, 1, blas64.General{Rows: rows, Cols: d, Stride: d, Data: p}, 1,
		blas64.Symmetric{Uplo: blas.Upper, N: d, Stride: d, Data: g})
}

func symmetrize(g []float64, d int) {
	for i := 0; i < d; i++ {
		for j := 0; j < i; j++ {
			g[i*d+j] = g[j*d+i]
		}
	}
}

// convGram returns XᵀX over the im2col patches of a 2-D Conv input
// [N, C, H, W] for a weight [O, C/g, kh, kw]; patch order is channel, then
// kernel row, then kernel column (the weight's own flattening).
func convGram(a Activation, wd []int64, n onnxio.Node) ([]float64, int, int64, error) {
	if len(a.Shape) != 4 || len(wd) != 4 {
		return nil, 0, 0, fmt.Errorf("conv %s: only 2-D convolutions (input %v, weight %v)", n.Name, a.Shape, wd)
	}
	N, C, H, W := int(a.Shape[0]), int(a.Shape[1]), int(a.Shape[2]), int(a.Shape[3])
	cg, kh, kw := int(wd[1]), int(wd[2]), int(wd[3])
	group := int(n.Int("group", 1))
	if group <= 0 || cg*group != C {
		return nil, 0, 0, fmt.Errorf("conv %s: %d input channels, weight takes %d per group × %d groups", n.Name, C, cg, group)
	}
	st := n.Ints("strides")
	if st == nil {
		st = []int64{1, 1}
	}
	dl := n.Ints("dilations")
	if dl == nil {
		dl = []int64{1, 1}
	}
	pads := n.Ints("pads")
	if pads == nil {
		pads = []int64{0, 0, 0, 0}
	}
	if len(st) != 2 || len(dl) != 2 || len(pads) != 4 {
		return nil, 0, 0, fmt.Errorf("conv %s: bad strides/dilations/pads", n.Name)
	}
	sy, sx, dy, dx := int(st[0]), int(st[1]), int(dl[0]), int(dl[1])
	pt, pl, pb, pr := int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])
	ekh, ekw := dy*(kh-1)+1, dx*(kw-1)+1
	switch ap := n.Str("auto_pad", "NOTSET"); ap {
	case "NOTSET":
	case "VALID":
		pt, pl, pb, pr = 0, 0, 0, 0
	case "SAME_UPPER", "SAME_LOWER":
		py := max(0, ((H+sy-1)/sy-1)*sy+ekh-H)
		px := max(0, ((W+sx-1)/sx-1)*sx+ekw-W)
		pt, pb, pl, pr = py/2, py-py/2, px/2, px-px/2
		if ap == "SAME_LOWER" {
			pt, pb, pl, pr = pb, pt, pr, pl
		}
	default:
		return nil, 0, 0, fmt.Errorf("conv %s: auto_pad %q", n.Name, ap)
	}
	if sy <= 0 || sx <= 0 || dy <= 0 || dx <= 0 {
		return nil, 0, 0, fmt.Errorf("conv %s: bad strides or dilations", n.Name)
	}
	oh := (H+pt+pb-ekh)/sy + 1
	ow := (W+pl+pr-ekw)/sx + 1
	if oh <= 0 || ow <= 0 {
		return nil, 0, 0, fmt.Errorf("conv %s: empty output", n.Name)
	}
	d := cg * kh * kw
	g := make([]float64, d*d)
	const chunk = 256
	buf := make([]float64, chunk*d)
	rows := 0
	var total int64
	flush := func() {
		if rows > 0 {
			syrkAdd(g, buf[:rows*d], rows, d)
			total += int64(rows)
			rows = 0
		}
	}
	for s := 0; s < N; s++ {
		for gr := 0; gr < group; gr++ {
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					p := buf[rows*d : (rows+1)*d]
					for c := 0; c < cg; c++ {
						plane := a.Data[((s*C)+gr*cg+c)*H*W:]
						for i := 0; i < kh; i++ {
							y := oy*sy - pt + i*dy
							for j := 0; j < kw; j++ {
								x := ox*sx - pl + j*dx
								v := 0.0
								if y >= 0 && y < H && x >= 0 && x < W {
									v = float64(plane[y*W+x])
								}
								p[(c*kh+i)*kw+j] = v
							}
						}
					}
					rows++
					if rows == chunk {
						flush()
					}
				}
			}
		}
	}
	flush()
	symmetrize(g, d)
	return g, d, total, nil
}

// RowActivation reports whether tensor is read by InputGram as rows along
// its last axis: every node of m taking it as its data input is a MatMul,
// or a Gemm without transA (not a Conv). Such an activation may lose rows,
// e.g. the padded token positions of a language model, without changing
// the meaning of the others.
func RowActivation(m *onnxio.Model, tensor string) bool {
	found := false
	for _, n := range m.Nodes() {
		if n.Input(0) != tensor {
			continue
		}
		switch {
		case n.OpType == "MatMul", n.OpType == "Gemm" && n.Int("transA", 0) == 0:
			found = true
		case n.OpType == "Conv", n.OpType == "Gemm":
			return false
		}
	}
	return found
}
