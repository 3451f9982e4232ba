package pipeline

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/onnxpost/onnxpost/compress/lowrank"
	"github.com/onnxpost/onnxpost/compress/sparsity"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
	"github.com/onnxpost/onnxpost/quant"
	"github.com/onnxpost/onnxpost/transform"
)

// mergedCase is a calibrated transform of the zoo's merged decoder.
type mergedCase struct {
	name, cmd string
	values    map[string]any
	shared    bool // its statistics are keyed by weight names only
}

var mergedCases = []mergedCase{
	{"wanda 2:4", "sparsify", map[string]any{"method": "wanda", "pattern": "2:4"}, true},
	{"sparsegpt 2:4", "sparsify", map[string]any{"method": "sparsegpt", "pattern": "2:4"}, true},
	{"int4 gptq", "quantize", map[string]any{"weights": "int4", "method": "gptq"}, true},
	{"lowrank whitened", "lowrank", map[string]any{"rank-ratio": 0.5, "whiten": true}, true},
	{"int8 static", "quantize", map[string]any{"weights": "int8", "activations": "int8"}, false},
}

// mergedFixture loads the zoo's merged decoder and the first n windows of
// its calibration data.
func mergedFixture(tb testing.TB, n int) (*onnxio.Model, *evalharness.Dataset) {
	tb.Helper()
	if err := evalharness.Init(""); err != nil {
		tb.Skipf("ONNX Runtime not available (run `make ort`): %v", err)
	}
	m, err := onnxio.Load(zoo("zoo", "lm", "base_merged.onnx"))
	if err != nil {
		tb.Skipf("zoo LM missing (make zoo-lm): %v", err)
	}
	full, err := evalharness.LoadDataset(zoo("data", "lm_pydoc_calib.npz"))
	if err != nil {
		tb.Fatal(err)
	}
	ds, err := subset(full, n)
	if err != nil {
		tb.Fatal(err)
	}
	return m, ds
}

// bind returns the case's transform, its Input on m, and the calibration
// it needs (as a recipe step computes it), counting the captures in *n.
func (c mergedCase) bind(tb testing.TB, m *onnxio.Model, ds *evalharness.Dataset, n *int) (*transform.Transform, transform.Input, transform.Calibrate) {
	tb.Helper()
	t, args, err := CommandNamed(c.cmd).Check(c.values)
	if err != nil {
		tb.Fatal(err)
	}
	co := CalibOptions{Batch: 64}
	cal := func(ctx context.Context, model *onnxio.Model) (any, error) {
		*n++
		switch c.cmd {
		case "quantize":
			opt, err := quant.OptionsFromArgs(args)
			if err != nil {
				return nil, err
			}
			model.EnsureNodeNames()
			return QuantCalibration(ctx, model, ds, opt, co)
		case "sparsify":
			opt, sel, err := sparsity.OptionsFromArgs(args)
			if err != nil {
				return nil, err
			}
			return SparsityCalibration(ctx, model, ds, sel, opt.Method, co)
		}
		opt, err := lowrank.OptionsFromArgs(args, 0)
		if err != nil {
			return nil, err
		}
		return LowrankCalibration(ctx, model, ds, opt, co)
	}
	return t, transform.Input{Models: []*onnxio.Model{m}, Args: args}, cal
}

// perBranch runs t on every branch of in calibrated on that branch (what
// the command line does).
func perBranch(ctx context.Context, t *transform.Transform, in transform.Input, cal transform.Calibrate) (*onnxio.Model, error) {
	out, _, err := transform.RunBranches(ctx, in, func(ctx context.Context, _ string, in transform.Input) (*onnxio.Model, any, error) {
		c, err := cal(ctx, in.Models[0])
		if err != nil {
			return nil, nil, err
		}
		in.Calibration = c
		return t.Run(ctx, in)
	})
	return out, err
}

// On a merged decoder, Apply captures statistics keyed by weight names
// (Grams, column norms) once, on the no-cache branch, and hands them to
// both branches; the model is the one calibrating each branch on itself
// gives. Activation ranges (static int8) are captured per branch.
func TestApplyMergedSharedCalibration(t *testing.T) {
	m, ds := mergedFixture(t, 8)
	ctx := context.Background()
	bs, err := m.LiftBranches()
	if err != nil {
		t.Fatal(err)
	}
	noCache := ""
	for _, b := range bs {
		if !slices.ContainsFunc(b.Model.Inputs(), func(v onnxio.ValueInfo) bool { return strings.HasPrefix(v.Name, "past_key_values.") }) {
			noCache = b.Attr
		}
	}
	for _, c := range mergedCases {
		t.Run(c.name, func(t *testing.T) {
			var n, nRef int
			tr, in, cal := c.bind(t, m, ds, &n)
			got, rep, err := transform.Apply(ctx, tr, in, cal)
			if err != nil {
				t.Fatal(err)
			}
			br, ok := rep.(*transform.BranchReport)
			if !ok {
				t.Fatalf("report %T, want *transform.BranchReport", rep)
			}
			wantOn, wantN := "", 2
			if c.shared {
				wantOn, wantN = noCache, 1
			}
			if br.CalibratedOn != wantOn || n != wantN {
				t.Errorf("calibrated on %q, %d captures; want %q, %d", br.CalibratedOn, n, wantOn, wantN)
			}
			_, _, ref := c.bind(t, m, ds, &nRef)
			want, err := perBranch(ctx, tr, in, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !got.SameGraph(want) {
				t.Error("the model differs from the one calibrating each branch on itself gives")
			}
		})
	}
}

// BenchmarkMergedDecoderCalibration times a calibrated transform of the
// zoo's merged decoder with the statistics captured once and shared by
// both branches (Apply) against captured on each branch (per-branch).
//
//	go test ./pipeline -run '^$' -bench MergedDecoderCalibration -benchtime 3x
func BenchmarkMergedDecoderCalibration(b *testing.B) {
	m, ds := mergedFixture(b, 64)
	ctx := context.Background()
	for _, c := range mergedCases {
		if !c.shared {
			continue
		}
		var n int
		tr, in, cal := c.bind(b, m, ds, &n)
		b.Run(strings.ReplaceAll(c.name, " ", "_")+"/per-branch", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := perBranch(ctx, tr, in, cal); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(strings.ReplaceAll(c.name, " ", "_")+"/shared", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, _, err := transform.Apply(ctx, tr, in, cal); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
