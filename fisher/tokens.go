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
// Σ seed⊙logits for a seed fed as an input, flattened per parameter.
func buildTokens(m *onnxio.Model, base *Graph, info map[string]autodiff.Info) (*Graph, error) {
	g := m.Clone()
	gr := *base
	gr.Mode = ModeTokens
	dt := info[base.Output].DType
	g.AddInput(onnxio.ValueInfo{Name: TokenSeedInput, DType: dt, Shape: []onnxio.Dim{{Value: 1}, {Param: "fisher_sequence"}, {Value: int64(base.Classes)}}})
	grads, err := autodiff.VJP(g, base.Output, TokenSeedInput, base.Params, autodiff.Options{Info: info, Prefix: "fisher_bwd"})
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	b := &graphBuilder{pre: g.UniqueName("fisher")}
	m1 := b.constant("m1", mustInts(-1))
	gr.Outputs = make([]string, len(base.Params))
	vis := make([]onnxio.ValueInfo, len(base.Params))
	for j, p := range base.Params {
		gr.Outputs[j] = b.add("Reshape", []string{grads[p], m1}, fmt.Sprintf("out%d", j))
		ne, _ := onnxio.NumElements(base.Shapes[p])
		vis[j] = onnxio.ValueInfo{Name: gr.Outputs[j], DType: info[p].DType, Shape: []onnxio.Dim{{Value: ne}}}
	}
	if err := g.InsertNodes(b.nodes...); err != nil {
		return nil, err
	}
	g.SetOutputs(vis)
	gr.Model = g
	return &gr, nil
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
			labels, coefs := tokenLabels(lp, p, opt.Samples, rng)
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
				for j := range g.Params {
					gv, err := gout[outIdx[g.Outputs[j]]].Float64()
					if err != nil {
						return 0, err
					}
					if len(gv) != len(acc[j]) {
						return 0, fmt.Errorf("fisher: %s: gradient has %d elements, want %d", g.Params[j], len(gv), len(acc[j]))
					}
					for k, x := range gv {
						acc[j][k] += coefs[q] * x * x
					}
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

// tokenLabels returns the labels of one position and their coefficients:
// every class with p(y|x), or samples drawn labels with 1/samples each.
func tokenLabels(lp, p []float64, samples int, rng *rand.Rand) ([]int, []float64) {
	var labels []int
	var coefs []float64
	if samples > 0 {
		for _, y := range sampleLabels(lp, samples, rng) {
			labels = append(labels, y)
			coefs = append(coefs, 1/float64(samples))
		}
		return labels, coefs
	}
	for y := range p {
		labels = append(labels, y)
		coefs = append(coefs, p[y])
	}
	return labels, coefs
}

// newGraphSession opens an ONNX Runtime session on g's model.
func newGraphSession(g *Graph, opt Options) (*evalharness.Session, error) {
	gb, err := g.Model.Bytes()
	if err != nil {
		return nil, err
	}
	sess, err := evalharness.NewSession(gb, opt.Session)
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
