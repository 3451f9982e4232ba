package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/calib"
	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/internal/selection/selectiontest"
	"github.com/onnxpost/onnxpost/onnxio"
)

func TestPrunedSparsity(t *testing.T) {
	tests := []struct {
		zeros int64
		n     int
		ok    bool
	}{
		{0, 10, true}, {3, 7, true}, {7, 10, true}, {1, 3, true}, {2, 3, true},
		{614, 1024, true}, {1023, 1024, true}, {12345, 147456, true},
		{10, 10, false}, {-1, 10, false},
	}
	for _, tc := range tests {
		s, err := PrunedSparsity(tc.zeros, tc.n)
		if (err == nil) != tc.ok {
			t.Errorf("PrunedSparsity(%d, %d): err %v", tc.zeros, tc.n, err)
			continue
		}
		if tc.ok && int64(sparsity.PrunedCount(s, tc.n)) != tc.zeros {
			t.Errorf("PrunedSparsity(%d, %d) = %v prunes %d", tc.zeros, tc.n, s, sparsity.PrunedCount(s, tc.n))
		}
	}
}

func loadZoo(t *testing.T, family string, samples int) (*onnxio.Model, *evalharness.Dataset) {
	t.Helper()
	needORT(t)
	m, err := onnxio.Load(zoo("zoo", family, "base.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := evalharness.LoadDataset(zoo("data", "digits_clean_val.npz"))
	if err != nil {
		t.Fatal(err)
	}
	if ds, err = subset(ds, samples); err != nil {
		t.Fatal(err)
	}
	return m, ds
}

func smallSearch(seed int64) search.Options {
	return search.Options{Generations: 8, Offspring: 6, Survivors: []int{2, 1}, Samples: []int{32, 96}, Rand: rand.New(rand.NewSource(seed))}
}

// klOf evaluates a written model against the dense one on ds, the way the
// search's KL fitness is defined (mean KL of softmax rows).
func klOf(t *testing.T, cand, dense *onnxio.Model, ds *evalharness.Dataset) float64 {
	t.Helper()
	run := func(m *onnxio.Model) []float64 {
		s, err := evalharness.SessionFromModel(m, evalharness.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		o, err := evalharness.Predict(s, ds, 64)
		if err != nil {
			t.Fatal(err)
		}
		v, err := o[0].Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b := run(dense), run(cand)
	c := len(a) / int(ds.N)
	var sum float64
	for i := 0; i < int(ds.N); i++ {
		sum += evalharness.KL(a[i*c:(i+1)*c], b[i*c:(i+1)*c])
	}
	return sum / float64(ds.N)
}

// TestRankSearchOnZoo searches ranks on the MLP (Gemm transB weights; the
// two 128×64/64×128 layers share a group, the 10×64 head is alone) and
// checks the exact budget, that the written model really holds two
// factors per layer with the reported parameter count, and that the
// rewritten model reproduces the fitness computed with dense A·B weights.
func TestRankSearchOnZoo(t *testing.T) {
	m, ds := loadZoo(t, "mlp", 128)
	out, rep, err := RunSearch(context.Background(), m, ds, LevelSearch{Space: SpaceRank, Target: 0.4, Levels: 4, Search: smallSearch(1)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Searched.Cost != rep.Uniform.Cost || rep.Heuristic.Cost != rep.Uniform.Cost {
		t.Fatalf("budgets differ: %d %d %d", rep.Searched.Cost, rep.Uniform.Cost, rep.Heuristic.Cost)
	}
	if rep.Groups != 2 {
		t.Errorf("%d groups, want 2 (fc1+fc2 by m+n, fc3)", rep.Groups)
	}
	var want int64
	for _, lc := range rep.Searched.Layers {
		if lc.Cost != lc.Value*int64(map[string]int{"fc1.weight": 192, "fc2.weight": 192, "fc3.weight": 74}[lc.Name]) {
			t.Errorf("%s: cost %d at rank %d", lc.Name, lc.Cost, lc.Value)
		}
		want += lc.Params - lc.Cost
	}
	before, after := paramsOf(t, m), paramsOf(t, out)
	if before-after != want {
		t.Errorf("the rewrite saved %d parameters, the report %d", before-after, want)
	}
	got := klOf(t, out, m, ds)
	if math.Abs(got-rep.Searched.Loss) > 1e-4*math.Max(1, rep.Searched.Loss) {
		t.Errorf("rewritten model KL %.6g, search reported %.6g with dense A·B weights", got, rep.Searched.Loss)
	}
	if rep.Searched.Loss > rep.Uniform.Loss {
		t.Errorf("searched KL %.5g worse than uniform %.5g", rep.Searched.Loss, rep.Uniform.Loss)
	}
}

func paramsOf(t *testing.T, m *onnxio.Model) int64 {
	t.Helper()
	ws, err := m.Weights()
	if err != nil {
		t.Fatal(err)
	}
	var p int64
	for _, w := range ws {
		p += w.Params()
	}
	return p
}

// TestBitsSearchOnZoo searches 2/4-bit widths on the transformer's MatMul
// weights at a mean of 3 bits: the budget is exact, and every block of 32
// weights along K of each output column of the written model holds at
// most 2^bits distinct values for its reported width.
func TestBitsSearchOnZoo(t *testing.T) {
	m, ds := loadZoo(t, "transformer", 96)
	run := func() (*onnxio.Model, *SearchReport) {
		out, rep, err := RunSearch(context.Background(), m, ds, LevelSearch{Space: SpaceBits, Target: 3, Search: smallSearch(2)})
		if err != nil {
			t.Fatal(err)
		}
		return out, rep
	}
	out, rep := run()
	out2, _ := run()
	b1, _ := out.Bytes()
	b2, _ := out2.Bytes()
	if string(b1) != string(b2) {
		t.Error("same seed gave a different model")
	}
	if rep.Searched.Cost != rep.Uniform.Cost || rep.Heuristic.Cost != rep.Uniform.Cost {
		t.Fatalf("budgets differ: %d %d %d", rep.Searched.Cost, rep.Uniform.Cost, rep.Heuristic.Cost)
	}
	if math.Abs(rep.Achieved-3) > 0.1 {
		t.Errorf("achieved %.4f bits, want about 3", rep.Achieved)
	}
	// the written model holds the real packed weights: one MatMulNBits per
	// searched layer with the reported width, and no float copy left
	nbits := map[string]int64{}
	for _, n := range out.Nodes() {
		if n.OpType == "MatMulNBits" {
			nbits[n.Inputs[1]] = n.Int("bits", 0)
		}
	}
	for _, lc := range rep.Searched.Layers {
		if out.HasInitializer(lc.Name) {
			t.Errorf("%s is still stored in float", lc.Name)
		}
		q := fmt.Sprintf("%s_Q%d", lc.Name, lc.Value)
		if got, ok := nbits[q]; !ok || got != lc.Value {
			t.Errorf("%s: MatMulNBits input %s with bits %d, want %d (nodes: %v)", lc.Name, q, got, lc.Value, nbits)
		}
	}
	// and it computes what the search evaluated with dequantized weights:
	// the same KL to the dense model on the calibration set
	kl := meanKL(t, m, out, ds)
	t.Logf("packed model KL %.6g, search %.6g", kl, rep.Searched.Loss)
	if kl <= 0 || math.Abs(kl-rep.Searched.Loss) > 1e-4*math.Max(1, rep.Searched.Loss) {
		t.Errorf("packed model KL %.6g, search reported %.6g", kl, rep.Searched.Loss)
	}
}

// meanKL runs both models on ds and returns the mean KL(dense ‖ cand) of
// their first outputs.
func meanKL(t *testing.T, dense, cand *onnxio.Model, ds *evalharness.Dataset) float64 {
	t.Helper()
	logits := func(m *onnxio.Model) ([]float64, int) {
		b, err := m.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		s, err := evalharness.NewSession(b, evalharness.SessionOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		outs, err := evalharness.Predict(s, ds, 64)
		if err != nil {
			t.Fatal(err)
		}
		v, err := outs[0].Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v, int(outs[0].Shape[len(outs[0].Shape)-1])
	}
	p, c := logits(dense)
	q, _ := logits(cand)
	var sum float64
	for i := 0; i < len(p); i += c {
		sum += evalharness.KL(p[i:i+c], q[i:i+c])
	}
	return sum / float64(len(p)/c)
}

// TestWandaLevelsAndCacheKey builds Wanda and SparseGPT levels from
// captured activations: every level prunes exactly its number of weights,
// and the cache key separates methods and calibration sets.
func TestWandaLevelsAndCacheKey(t *testing.T) {
	m, ds := loadZoo(t, "transformer", 64)
	ws, err := SelectLayers(m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stats, h, err := newCalibSource(context.Background(), m, ds, LevelSearch{}, func(string, ...any) {}).need(calib.Request{Grams: weightNames(ws)})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []sparsity.Method{sparsity.Wanda, sparsity.SparseGPT} {
		build, err := PrunerLevel(m, method, stats)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws[:3] {
			v, err := weightValues(m, w)
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range []int64{0, 1, int64(len(v)) / 3, int64(len(v)) - 1} {
				p, err := build(context.Background(), w, v, z)
				if err != nil {
					t.Fatal(err)
				}
				// SparseGPT also zeroes the weights of dead inputs (zero
				// diagonal of XᵀX, e.g. always-blank pixels), beyond its
				// pruned count
				zeros := int64(sparsity.CountZeros(p))
				if zeros < z || (method == sparsity.Wanda && zeros > z+int64(sparsity.CountZeros(v))) {
					t.Errorf("%s %s level %d: %d zeros", method, w.Name, z, zeros)
				}
			}
		}
	}
	other, err := subset(ds, 32)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, db := range []*LevelDB{
		{ModelHash: "m", Method: "sparsity/wanda", CalibHash: h},
		{ModelHash: "m", Method: "sparsity/wanda", CalibHash: DatasetHash(other)},
		{ModelHash: "m", Method: "sparsity/sparsegpt", CalibHash: h},
		{ModelHash: "m", Method: "sparsity/magnitude"},
	} {
		keys[db.Key("w", 5)] = true
	}
	if len(keys) != 4 {
		t.Errorf("cache keys collide: %d distinct of 4", len(keys))
	}
	if h != DatasetHash(ds) || h == DatasetHash(other) {
		t.Error("dataset hash not a function of the data")
	}
}

func TestChooseFitness(t *testing.T) {
	tests := []struct {
		req, out string
		labels   bool
		want     string
	}{
		{"", "logits", false, FitnessKL},
		{"", "output", true, FitnessKL},
		{"", "sentence_embedding", false, FitnessCosine},
		{FitnessMSE, "sentence_embedding", false, FitnessMSE},
		{FitnessKL, "sentence_embedding", false, FitnessKL},
		{"ppl", "logits", true, ""},
	}
	for _, tc := range tests {
		got, err := ChooseFitness(tc.req, tc.out, tc.labels)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ChooseFitness(%q, %q, %v) = %q, %v; want %q", tc.req, tc.out, tc.labels, got, err, tc.want)
		}
	}
}

// TestFitnessChoice runs searches with the automatic fitness (KL for the
// MLP's logits, with or without labels) and explicit MSE and cosine: each
// keeps the budget and does not end worse than uniform.
func TestFitnessChoice(t *testing.T) {
	m, ds := loadZoo(t, "mlp", 96)
	unlabelled, err := evalharness.NewDataset(ds.Inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fitness string
		ds      *evalharness.Dataset
		want    string
	}{
		{"", ds, FitnessKL},
		{"", unlabelled, FitnessKL},
		{FitnessCosine, unlabelled, FitnessCosine},
		{FitnessMSE, ds, FitnessMSE},
	} {
		_, rep, err := RunSearch(context.Background(), m, tc.ds, LevelSearch{Target: 0.8, Levels: 4, Fitness: tc.fitness, Search: smallSearch(3)})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Fitness != tc.want {
			t.Errorf("fitness %q with labels=%v: got %q, want %q", tc.fitness, tc.ds.Labels != nil, rep.Fitness, tc.want)
		}
		if rep.Searched.Cost != rep.Uniform.Cost || rep.Searched.Loss > rep.Uniform.Loss || rep.Uniform.Loss <= 0 {
			t.Errorf("%s: searched %.5g (cost %d), uniform %.5g (cost %d)", rep.Fitness, rep.Searched.Loss, rep.Searched.Cost, rep.Uniform.Loss, rep.Uniform.Cost)
		}
	}
	if _, _, err := RunSearch(context.Background(), m, ds, LevelSearch{Target: 0.8, Fitness: "ppl", Search: smallSearch(3)}); err == nil {
		t.Error("unknown fitness accepted")
	}
}

func TestMagnitudeLevelsMatchesMagnitudeLevel(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	v := make([]float32, 257)
	for i := range v {
		v[i] = float32(r.NormFloat64())
		if i%17 == 0 {
			v[i] = v[i/2] // ties
		}
	}
	build := MagnitudeLevels()
	w := onnxio.Weight{Name: "w"}
	for _, z := range []int64{0, 1, 100, 256, 257} {
		a, err := MagnitudeLevel(context.Background(), w, v, z)
		if err != nil {
			t.Fatal(err)
		}
		b, err := build(context.Background(), w, v, z)
		if err != nil {
			t.Fatal(err)
		}
		if int64(sparsity.CountZeros(a)) != z {
			t.Errorf("level %d: %d zeros", z, sparsity.CountZeros(a))
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("level %d differs at %d", z, i)
			}
		}
	}
	if _, err := build(context.Background(), w, v, 258); err == nil {
		t.Error("258 zeros of 257 accepted")
	}
}

// TestMagnitudeLevelConforms runs the search's magnitude levels through the
// shared pruner suite: they prune what `sparsify --method magnitude` prunes
// (ties: higher index first). Before issue #13 they pruned the lower index
// first: w = [1, −1, 1, −1, 0.5, 2] at 3 zeros gave [0, 0, 1, −1, 0, 2].
func TestMagnitudeLevelConforms(t *testing.T) {
	selectiontest.RunPruner(t, func(w []float32, zeros int) ([]float32, error) {
		return MagnitudeLevel(context.Background(), onnxio.Weight{Name: "w"}, w, int64(zeros))
	})
}

// TestMagnitudeLevelEqualsSparsify checks the level builder against
// sparsify's pruner (PrunerLevel with the magnitude method goes through
// sparsity.PruneLayer) on tie-heavy weights.
func TestMagnitudeLevelEqualsSparsify(t *testing.T) {
	// W is a MatMul B [K=2, N=5]: sparsify breaks ties in the matrix view
	// (output unit × K), not in W's flat order.
	w := []float32{1, -1, 1, -1, 0.5, 2, 2, -0.5, 1, 0}
	m := onnxio.New("mm", 17)
	m.AddInput(onnxio.ValueInfo{Name: "x", DType: onnxio.Float, Shape: []onnxio.Dim{{Param: "n", Value: -1}, {Value: 2}}})
	raw := make([]byte, 4*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	wt, err := onnxio.NewTensor("W", onnxio.Float, []int64{2, 5}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetInitializer(wt); err != nil {
		t.Fatal(err)
	}
	if err := m.InsertNodes(onnxio.Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "W"}, Outputs: []string{"y"}}); err != nil {
		t.Fatal(err)
	}
	m.AddOutput(onnxio.ValueInfo{Name: "y", DType: onnxio.Float})
	ws, err := m.WeightMap()
	if err != nil {
		t.Fatal(err)
	}
	viaSparsify, err := PrunerLevel(m, sparsity.Magnitude, nil)
	if err != nil {
		t.Fatal(err)
	}
	for z := int64(0); z <= int64(len(w)); z++ {
		a, err := MagnitudeLevel(context.Background(), ws["W"], w, z)
		if err != nil {
			t.Fatal(err)
		}
		b, err := viaSparsify(context.Background(), ws["W"], w, z)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%d zeros: search %v, sparsify %v", z, a, b)
		}
	}
}

// TestSpacesShareOneCalibration: the sparsity (Wanda: column norms) and
// bits (GPTQ: XᵀX) ladders of one run declare their needs on one source
// and the dense model is captured once for both.
func TestSpacesShareOneCalibration(t *testing.T) {
	m, ds := loadZoo(t, "transformer", 32)
	ws, err := SelectLayers(m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mm []onnxio.Weight
	for _, w := range ws {
		if w.Op == "MatMul" && len(w.Shape) == 2 {
			mm = append(mm, w)
		}
	}
	captures := 0
	src := newCalibSource(context.Background(), m, ds, LevelSearch{}, func(f string, _ ...any) {
		if strings.HasPrefix(f, "capturing") {
			captures++
		}
	})
	sps, err := sparsitySpace(m, mm, "h", src, LevelSearch{Target: 0.5, Levels: 2, Method: "wanda"})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := bitsSpace(m, mm, "h", src, LevelSearch{Target: 4, Method: "gptq"})
	if err != nil {
		t.Fatal(err)
	}
	if sps.db.CalibHash == "" || sps.db.CalibHash != bs.db.CalibHash {
		t.Errorf("calibration hashes %q and %q", sps.db.CalibHash, bs.db.CalibHash)
	}
	w := mm[0]
	v, err := weightValues(m, w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sps.db.Build(context.Background(), w, v, int64(len(v)/2)); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.db.Build(context.Background(), w, v, 4); err != nil {
		t.Fatal(err)
	}
	if n := src.cal.Captures(); n != 1 || captures != 1 {
		t.Errorf("%d captures of the dense model (%d logged), want 1", n, captures)
	}
}
