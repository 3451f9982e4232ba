package pipeline

import (
	"context"
	"math/rand"
	"testing"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// candidateBench prepares the zoo transformer at 70% magnitude sparsity
// with ±4 levels, a 32-sample calibration stage (the first stage of the
// default search) and 16 random candidates.
type candidateBench struct {
	m       *onnxio.Model
	calib   *evalharness.Dataset
	sp      *space
	ref     []float64
	classes int
	cands   [][]int
	samples []int
}

func newCandidateBench(b *testing.B) *candidateBench {
	b.Helper()
	if err := evalharness.Init(""); err != nil {
		b.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
	m, err := onnxio.Load(zoo("zoo", "transformer", "base.onnx"))
	if err != nil {
		b.Fatal(err)
	}
	full, err := evalharness.LoadDataset(zoo("data", "digits_clean_val.npz"))
	if err != nil {
		b.Fatal(err)
	}
	calib, err := subset(full, 32)
	if err != nil {
		b.Fatal(err)
	}
	ws, err := SelectLayers(m, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	opt := LevelSearch{Target: 0.7, Levels: 4}
	sp, err := sparsitySpace(m, ws, "bench", newCalibSource(context.Background(), m, calib, opt, func(string, ...any) {}), opt)
	if err != nil {
		b.Fatal(err)
	}
	sess, err := evalharness.SessionFromModel(m, evalharness.SessionOptions{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	outs, err := evalharness.Predict(sess, calib, 64)
	sess.Close()
	if err != nil {
		b.Fatal(err)
	}
	ref, err := outs[0].Float64()
	if err != nil {
		b.Fatal(err)
	}
	cb := &candidateBench{m: m, calib: calib, sp: sp, ref: ref, classes: int(outs[0].Shape[1])}
	r := rand.New(rand.NewSource(1))
	for range 16 {
		lv := make([]int, len(sp.layers))
		for i, l := range sp.layers {
			lv[i] = r.Intn(l.levels())
		}
		cb.cands = append(cb.cands, lv)
	}
	for i := range int(calib.N) {
		cb.samples = append(cb.samples, i)
	}
	// build every level once, outside the timings
	for _, lv := range cb.cands {
		if _, err := setLevels(context.Background(), m, sp.layers, lv, sp.db); err != nil {
			b.Fatal(err)
		}
	}
	return cb
}

// BenchmarkCandidatesWeightsAsInputs scores candidates the way the search
// does: one session whose searched weights are graph inputs, each
// candidate's weights fed per run.
func BenchmarkCandidatesWeightsAsInputs(b *testing.B) {
	cb := newCandidateBench(b)
	wi := cb.m.Clone()
	var names []string
	for _, l := range cb.sp.layers {
		names = append(names, l.w.Name)
	}
	if _, err := wi.InitializersToInputs(names); err != nil {
		b.Fatal(err)
	}
	wb, err := wi.Bytes()
	if err != nil {
		b.Fatal(err)
	}
	sess, err := evalharness.NewSession(wb, evalharness.SessionOptions{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	ev := &fitnessEvaluator{sess: sess, calib: cb.calib, batch: 64,
		outs:   []*outTarget{{ref: cb.ref, kind: FitnessKL, rowLen: cb.classes, classes: cb.classes}},
		layers: cb.sp.layers, db: cb.sp.db, arrays: map[[2]int]*evalharness.Array{}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ev.Fitness(context.Background(), cb.cands[i%len(cb.cands)], cb.samples); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "candidates/s")
}

// BenchmarkCandidatesNewSession scores candidates by writing each
// candidate's weights into the model, serializing it and creating a
// session per candidate.
func BenchmarkCandidatesNewSession(b *testing.B) {
	cb := newCandidateBench(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cm, err := setLevels(context.Background(), cb.m, cb.sp.layers, cb.cands[i%len(cb.cands)], cb.sp.db)
		if err != nil {
			b.Fatal(err)
		}
		mb, err := cm.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		sess, err := evalharness.NewSession(mb, evalharness.SessionOptions{Threads: 1})
		if err != nil {
			b.Fatal(err)
		}
		ev := &fitnessEvaluator{sess: sess, calib: cb.calib, batch: 64,
			outs: []*outTarget{{ref: cb.ref, kind: FitnessKL, rowLen: cb.classes, classes: cb.classes}}}
		_, err = ev.Fitness(context.Background(), nil, cb.samples)
		sess.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "candidates/s")
}
