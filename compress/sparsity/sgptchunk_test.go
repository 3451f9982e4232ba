package sparsity

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/internal/linalg"
)

// sgptCase is one SparseGPT layer of the chunking tests: a weight of the
// given layout and dims, XᵀX of random inputs (dead inputs: columns never
// seen), the options.
type sgptCase struct {
	name   string
	layout Layout
	dims   []int64
	dead   []int
	opt    Options
}

var sgptCases = []sgptCase{
	{"KN 2:4", LayoutKN, []int64{48, 37}, nil, Options{Method: SparseGPT, Pattern: Pattern{N: 2, M: 4}, BlockSize: 16, Workers: 3}},
	{"KN 2:4 dead inputs", LayoutKN, []int64{32, 29}, []int{3, 17}, Options{Method: SparseGPT, Pattern: Pattern{N: 2, M: 4}, BlockSize: 8, Workers: 2}},
	{"NK 4:8 one worker", LayoutNK, []int64{23, 40}, []int{0}, Options{Method: SparseGPT, Pattern: Pattern{N: 4, M: 8}, BlockSize: 16, Workers: 1}},
	{"NK unstructured 0.5", LayoutNK, []int64{19, 36}, []int{5}, Options{Method: SparseGPT, Sparsity: 0.5, BlockSize: 16, Workers: 3}},
	{"KN unstructured 0.37", LayoutKN, []int64{24, 21}, nil, Options{Method: SparseGPT, Sparsity: 0.37, BlockSize: 8, Workers: 2}},
	{"conv 2:4 (stride 3)", LayoutConv, []int64{11, 8, 3, 1}, nil, Options{Method: SparseGPT, Pattern: Pattern{N: 2, M: 4}, BlockSize: 8, Workers: 3}},
}

// data returns the case's weight (tensor layout) and XᵀX, from a seed.
func (c sgptCase) data(t *testing.T) ([]float32, []float64, Shape) {
	sh, err := ShapeOf(c.layout, c.dims)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(int64(sh.Rows*1000 + sh.Cols)))
	w := make([]float32, sh.Len())
	for i := range w {
		w[i] = float32(rng.NormFloat64())
		switch i % 11 {
		case 4:
			if c.dead == nil {
				w[i] = 0
			}
		case 7:
			w[i] = w[i-1] // ties
		}
	}
	const samples = 50
	x := make([]float64, samples*sh.Cols)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	for _, j := range c.dead {
		for s := 0; s < samples; s++ {
			x[s*sh.Cols+j] = 0
		}
	}
	xtx := make([]float64, sh.Cols*sh.Cols)
	for s := 0; s < samples; s++ {
		row := x[s*sh.Cols : (s+1)*sh.Cols]
		for i, a := range row {
			for j, b := range row {
				xtx[i*sh.Cols+j] += a * b
			}
		}
	}
	return w, xtx, sh
}

// digest is a SHA-256 of float32 bits, a mask and a float64, in order.
func digest(w []float32, mask []bool, pruned int, loss float64) string {
	h := sha256.New()
	var b [8]byte
	for _, v := range w {
		binary.LittleEndian.PutUint32(b[:4], math.Float32bits(v))
		h.Write(b[:4])
	}
	for _, m := range mask {
		if m {
			h.Write([]byte{1})
		} else {
			h.Write([]byte{0})
		}
	}
	binary.LittleEndian.PutUint64(b[:], uint64(pruned))
	h.Write(b[:])
	binary.LittleEndian.PutUint64(b[:], math.Float64bits(loss))
	h.Write(b[:])
	return fmt.Sprintf("%x", h.Sum(nil))[:16]
}

// mainDigests are the digests of PruneLayer's output (values, pruned
// count, loss) and of PruneSparseGPT's (values, mask, loss) for sgptCases
// as computed by the whole-matrix sweep before row chunks (main at
// 8fb458a), per linear-algebra backend (ONNXPOST_LINALG).
var mainDigests = map[string]map[string][2]string{
	"go": {
		"KN 2:4":               {"9a185197fe377bfc", "ab295ca788f9380f"},
		"KN 2:4 dead inputs":   {"65a4e3f4d3703726", "f5cf79f6146219a8"},
		"NK 4:8 one worker":    {"eb6e7f6f04acbc9d", "a31931163aea7197"},
		"NK unstructured 0.5":  {"37cd0a93c23dda7a", "7255dc02c3cca4e7"},
		"KN unstructured 0.37": {"61c3e261b1524180", "5eb53fa917c478d6"},
		"conv 2:4 (stride 3)":  {"f2ade227a90a0627", "d6b5ea5ac2a16cdb"},
	},
	"openblas": {
		"KN 2:4":               {"952b6e31f3850995", "e6e27d96be69b5a1"},
		"KN 2:4 dead inputs":   {"949ce5781b888f4b", "b266b767958708b9"},
		"NK 4:8 one worker":    {"e9de496df07f3d87", "22e5bd20bed48bd5"},
		"NK unstructured 0.5":  {"b27cf155381976eb", "d1de34f9d8604a3b"},
		"KN unstructured 0.37": {"9b58bfcdb34bc29a", "f9dc92ac5c5b001e"},
		"conv 2:4 (stride 3)":  {"636d3c346e778d14", "127290342903910b"},
	},
}

// TestSparseGPTRowChunks: SparseGPT in place on the tensor layout, rows
// swept in chunks of every size (sizes that do not divide the rows, one
// row, more than all), gives main's whole-matrix result bit for bit:
// values, pruned count, mask and loss, N:M and unstructured (one chunk),
// KN, NK and Conv layouts, dead inputs, 1–3 workers. (With OpenBLAS the
// trailing update's kernel is chosen per chunk from its share of non-zero
// errors, as main chose it per block over all rows: chunks of a few rows
// whose pruned weights are mostly exact zeros can differ in the last bits.
// The cases with dead inputs therefore have no zero weights.)
func TestSparseGPTRowChunks(t *testing.T) {
	want, ok := mainDigests[linalg.Default().Name()]
	if !ok {
		t.Skipf("no reference digests for backend %s", linalg.Default().Name())
	}
	for _, c := range sgptCases {
		t.Run(c.name, func(t *testing.T) {
			w, xtx, sh := c.data(t)
			orig := append([]float32(nil), w...)
			cal := fixedGram{xtx: xtx, d: sh.Cols, n: 50}
			out, rep, err := PruneLayer(context.Background(), Layer{Name: "w", Layout: c.layout, Dims: c.dims, Data: w}, c.opt, cal)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest(out, nil, rep.Pruned, rep.Loss); got != want[c.name][0] {
				t.Errorf("PruneLayer: digest %s, main %s", got, want[c.name][0])
			}
			if digest(w, nil, 0, 0) != digest(orig, nil, 0, 0) {
				t.Fatal("PruneLayer modified its input")
			}
			for _, chunk := range []int{1, 2, 3, 5, sh.Rows - 1, sh.Rows, sh.Rows + 3} {
				data := append([]float32(nil), w...)
				got, rep, err := pruneLayer(context.Background(), Layer{Name: "w", Layout: c.layout, Dims: c.dims, Data: data}, c.opt, cal, true, chunk)
				if err != nil {
					t.Fatal(err)
				}
				if &got[0] != &data[0] {
					t.Errorf("chunks of %d rows: not pruned in place", chunk)
				}
				if d := digest(got, nil, rep.Pruned, rep.Loss); d != want[c.name][0] {
					t.Errorf("chunks of %d rows: digest %s, main %s (loss %v)", chunk, d, want[c.name][0], rep.Loss)
				}
				// the matrix view with its mask
				m, _, err := ToMatrix(w, c.layout, c.dims)
				if err != nil {
					t.Fatal(err)
				}
				mask := make([]bool, len(m))
				pruned, loss, err := sparseGPT(context.Background(), viewRows{v: m, rows: sh.Rows, cols: sh.Cols}, sh, append([]float64(nil), xtx...), true, c.opt, chunk, mask, nil)
				if err != nil {
					t.Fatal(err)
				}
				if pruned != countTrue(mask) {
					t.Errorf("chunks of %d rows: %d pruned, mask holds %d", chunk, pruned, countTrue(mask))
				}
				if d := digest(m, mask, 0, loss); d != want[c.name][1] {
					t.Errorf("chunks of %d rows, matrix view: digest %s, main %s", chunk, d, want[c.name][1])
				}
			}
			res, err := PruneSparseGPT(context.Background(), func() []float32 { m, _, _ := ToMatrix(w, c.layout, c.dims); return m }(), sh, xtx, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if d := digest(res.W, res.Pruned, 0, res.Loss); d != want[c.name][1] {
				t.Errorf("PruneSparseGPT: digest %s, main %s", d, want[c.name][1])
			}
		})
	}
}
