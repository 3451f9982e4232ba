package fisher

import (
	"context"
	"fmt"
	"math"
	"math/rand"

	"github.com/onnxpost/onnxpost/autodiff"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ModeTokens is the mode of language models, whose logits are [batch,
// sequence, vocabulary]: every counted next-token position of a window is
// one example x (the window's tokens up to that position), and the
// gradient of log p(y|x) is taken through one backward pass per position
// and label, the seed (e_y − p at that position, zero elsewhere) fed as an
// input. A position t counts when attention_mask[t] and attention_mask[t+1]
// are 1 and, when the dataset has token labels, labels[t+1] is not −100:
// the positions that perplexity averages over.
const ModeTokens = "tokens"

// TokenSeedInput is the input of a ModeTokens graph holding the seed,
// [1, sequence, vocabulary].
const TokenSeedInput = "fisher_token_seed"

// buildTokens builds the ModeTokens graph: one window, the gradient of
// Σ seed⊙logits for a seed [1, sequence, vocabulary] fed as an input,
// flattened per parameter.
func buildTokens(m *onnxio.Model, base *Graph, info map[string]autodiff.Info) (*Graph, error) {
	shape := []onnxio.Dim{{Value: 1}, {Param: "fisher_sequence"}, {Value: int64(base.Classes)}}
	return buildSeeded(m, base, info, ModeTokens, TokenSeedInput, shape)
}

// countedPositions returns the positions t of window i whose logits count
// (see ModeTokens), for windows of length seq.
func countedPositions(ds *evalharness.Dataset, i int64, seq int) ([]int, error) {
	mask := ds.TokenMask(i, i+1)
	if mask != nil && len(mask) != seq {
		return nil, fmt.Errorf("%w: attention_mask has %d positions, the logits %d", ErrModel, len(mask), seq)
	}
	var labels []int64
	if ds.TokenLabels != nil {
		v, err := ds.TokenLabels.Slice(i, i+1).Int64()
		if err != nil {
			return nil, fmt.Errorf("fisher: labels: %w", err)
		}
		if len(v) != seq {
			return nil, fmt.Errorf("%w: labels have %d positions, the logits %d", ErrModel, len(v), seq)
		}
		labels = v
	}
	var out []int
	for t := 0; t+1 < seq; t++ {
		if mask != nil && (!mask[t] || !mask[t+1]) {
			continue
		}
		if labels != nil && labels[t+1] == -100 {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// computeTokens runs a ModeTokens graph over the first n windows of ds and
// returns the Fisher sums and the number of counted positions.
func computeTokens(ctx context.Context, g *Graph, m *onnxio.Model, ds *evalharness.Dataset, n int, opt Options, acc [][]float64) (int, error) {
	sess, err := newGraphSession(g, opt)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	outIdx := map[string]int{}
	for i, o := range sess.Outputs() {
		outIdx[o.Name] = i
	}
	fwd, err := forwardSession(m, g.Output, opt.Session)
	if err != nil {
		return 0, err
	}
	defer fwd.Close()
	rng := rand.New(rand.NewSource(opt.Seed))
	v := g.Classes
	examples := 0
	for i := 0; i < n; i++ {
		in := map[string]*evalharness.Array{}
		for k, a := range ds.Batch(int64(i), int64(i)+1) {
			if g.inputs[k] {
				in[k] = a
			}
		}
		outs, err := fwd.Run(in)
		if err != nil {
			return 0, fmt.Errorf("fisher: window %d: %w", i, err)
		}
		logits, err := outs[0].Float64()
		if err != nil {
			return 0, err
		}
		if len(logits)%v != 0 {
			return 0, fmt.Errorf("%w: logits of %d values, not a multiple of %d", ErrModel, len(logits), v)
		}
		seq := len(logits) / v
		pos, err := countedPositions(ds, int64(i), seq)
		if err != nil {
			return 0, err
		}
		seed := make([]float32, len(logits))
		for _, t := range pos {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			lp := evalharness.LogSoftmax(logits[t*v : (t+1)*v])
			p := make([]float64, v)
			for j, l := range lp {
				p[j] = math.Exp(l)
			}
			labels, coefs := labelsOf(lp, p, opt.Samples, rng)
			for q, y := range labels {
				row := seed[t*v : (t+1)*v]
				for j := range row {
					row[j] = float32(-p[j])
				}
				row[y]++
				in[TokenSeedInput] = floatArray(g.dtype, []int64{1, int64(seq), int64(v)}, seed)
				gout, err := sess.Run(in)
				if err != nil {
					return 0, fmt.Errorf("fisher: window %d, position %d: %w", i, t, err)
				}
				if err := addSquares(g, gout, outIdx, acc, coefs[q]); err != nil {
					return 0, err
				}
			}
			clear(seed[t*v : (t+1)*v])
			examples++
		}
		if opt.Progress != nil {
			opt.Progress(i+1, n)
		}
	}
	if examples == 0 {
		return 0, fmt.Errorf("%w: no counted token position in %d windows (attention_mask and labels leave none)", ErrModel, n)
	}
	return examples, nil
}

// newGraphSession opens an ONNX Runtime session on g's model.
func newGraphSession(g *Graph, opt Options) (evalharness.SessionRunner, error) {
	gb, err := g.Model.Bytes()
	if err != nil {
		return nil, err
	}
	sess, err := evalharness.OpenSession(evalharness.OpenRequest{Model: gb}, opt.Session)
	if err != nil {
		return nil, fmt.Errorf("fisher: gradient graph: %w", err)
	}
	return sess, nil
}

// resultTokens computes a ModeTokens Fisher over the first n windows.
func resultTokens(ctx context.Context, g *Graph, m *onnxio.Model, ds *evalharness.Dataset, n int, opt Options) (*Result, error) {
	acc := make([][]float64, len(g.Params))
	for i, p := range g.Params {
		ne, _ := onnxio.NumElements(g.Shapes[p])
		acc[i] = make([]float64, ne)
	}
	examples, err := computeTokens(ctx, g, m, ds, n, opt, acc)
	if err != nil {
		return nil, err
	}
	return finishResult(g, acc, examples)
}
