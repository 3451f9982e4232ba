package pipeline

import (
	"context"
	"fmt"
	"sort"

	"github.com/onnxpost/onnxpost/compress/search"
	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// SpaceDrop is the residual-block dropping space: each residual sub-block
// is kept (level 0) or dropped (level 1), and the budget (LevelSearch.Target)
// is the number of dropped blocks.
const SpaceDrop = "drop"

// ResidualBlock is one droppable residual sub-block found by
// FindResidualBlocks: an Add node y = skip + branch whose skip input is an
// ancestor of its branch input, where the path from skip to branch holds at
// least one MatMul/Gemm/Conv weight, and whose branch ends in a linear
// layer (MatMul, optionally followed by an Add of a bias initializer; or
// Gemm; or Conv). Zeroing that last layer's weight and bias makes the
// branch exactly 0, so y = skip + 0 = skip: the block is dropped.
type ResidualBlock struct {
	// Name is the block's name: its last linear layer's weight.
	Name string
	// Add is the residual Add node, Skip and Branch its input values and
	// Output its output value.
	Add, Skip, Branch, Output string
	// Weight and Bias are the initializers of the branch's last linear
	// layer (Bias is "" when it has none); dropping feeds zeros for both.
	Weight, Bias string
	// Last is the weight's description.
	Last onnxio.Weight
}

// SkippedBlock is a residual Add whose branch does not end in a linear
// layer with a weight of its own, so zeroing weights cannot drop it.
type SkippedBlock struct {
	Add    string `json:"add"`
	Reason string `json:"reason"`
}

// FindResidualBlocks returns the residual sub-blocks of m in graph order
// (see ResidualBlock for the rule) and the residual Adds it had to skip.
// Only weights in sel (the searched weights; nil: all MatMul/Gemm/Conv
// float weights) may end a block.
func FindResidualBlocks(m *onnxio.Model, sel []onnxio.Weight) ([]ResidualBlock, []SkippedBlock, error) {
	nodes := m.Nodes()
	ws, err := m.Weights()
	if err != nil {
		return nil, nil, err
	}
	linear := map[string]onnxio.Weight{} // weight name -> description
	for _, w := range ws {
		switch w.Role {
		case onnxio.RoleMatMulB, onnxio.RoleGemmB, onnxio.RoleConvW:
			linear[w.Name] = w
		}
	}
	selected := map[string]bool{}
	for _, w := range sel {
		selected[w.Name] = true
	}
	producer := map[string]int{}
	consumers := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.Outputs {
			producer[o] = i
		}
		for _, in := range n.Inputs {
			if in != "" {
				consumers[in]++
			}
		}
	}
	for _, o := range m.Outputs() {
		consumers[o.Name]++
	}
	isInit := func(v string) bool { return m.HasInitializer(v) }
	var blocks []ResidualBlock
	var skipped []SkippedBlock
	for _, r := range m.ResidualAdds() {
		n, skip, branch := nodes[r.Node], r.Skip, r.Branch
		if len(n.Outputs) != 1 {
			continue
		}
		// a block with weights: a linear weight on the path from skip to
		// branch (not a bias or mask Add)
		onPath := false
		for _, i := range r.Path {
			for _, in := range nodes[i].Inputs {
				if _, ok := linear[in]; ok && isInit(in) {
					onPath = true
				}
			}
		}
		if !onPath {
			continue // not a residual block with weights (e.g. a bias or mask Add)
		}
		blk, reason := lastLinear(m, nodes, producer, consumers, linear, branch)
		if reason == "" && sel != nil && !selected[blk.Weight] {
			reason = fmt.Sprintf("its last weight %q is not selected", blk.Weight)
		}
		if reason != "" {
			skipped = append(skipped, SkippedBlock{Add: n.Name, Reason: reason})
			continue
		}
		blk.Add, blk.Skip, blk.Branch, blk.Output = n.Name, skip, branch, n.Outputs[0]
		blocks = append(blocks, blk)
	}
	return blocks, skipped, nil
}

// lastLinear checks that the branch value is produced by a linear layer
// (MatMul[+bias Add], Gemm, Conv) whose weight and bias are initializers
// used only there and whose intermediate values feed nothing else, so
// that zeroing them makes the branch exactly zero. It returns the reason
// when not.
func lastLinear(m *onnxio.Model, nodes []onnxio.Node, producer map[string]int, consumers map[string]int, linear map[string]onnxio.Weight, branch string) (ResidualBlock, string) {
	pi, ok := producer[branch]
	if !ok {
		return ResidualBlock{}, "the branch is not produced by a node"
	}
	p := nodes[pi]
	if consumers[branch] != 1 {
		return ResidualBlock{}, fmt.Sprintf("the branch value %q has other consumers", branch)
	}
	single := func(v string) bool { return consumers[v] == 1 }
	weightOf := func(n onnxio.Node, slot int) (onnxio.Weight, string) {
		if len(n.Inputs) <= slot {
			return onnxio.Weight{}, fmt.Sprintf("%s %q has no weight input", n.OpType, n.Name)
		}
		w, ok := linear[n.Inputs[slot]]
		if !ok || !m.HasInitializer(w.Name) || len(w.Via) != 0 {
			return onnxio.Weight{}, fmt.Sprintf("%s %q has no initializer weight", n.OpType, n.Name)
		}
		if w.DType != onnxio.Float || !single(w.Name) {
			return onnxio.Weight{}, fmt.Sprintf("weight %q is not a float32 tensor used once", w.Name)
		}
		return w, ""
	}
	floatInit := func(v string) bool {
		dt, _, err := m.InitializerInfo(v)
		return err == nil && dt == onnxio.Float && single(v)
	}
	switch p.OpType {
	case "Add":
		// MatMul + bias
		var mmOut, bias string
		for k, in := range p.Inputs {
			if m.HasInitializer(in) {
				bias, mmOut = in, p.Inputs[1-k]
			}
		}
		if len(p.Inputs) != 2 || bias == "" {
			return ResidualBlock{}, fmt.Sprintf("the branch ends in Add %q without a bias initializer", p.Name)
		}
		if !floatInit(bias) {
			return ResidualBlock{}, fmt.Sprintf("bias %q is not a float32 initializer used once", bias)
		}
		qi, ok := producer[mmOut]
		if !ok || nodes[qi].OpType != "MatMul" || !single(mmOut) {
			return ResidualBlock{}, fmt.Sprintf("the branch ends in Add %q not fed by a MatMul used once", p.Name)
		}
		w, why := weightOf(nodes[qi], 1)
		if why != "" {
			return ResidualBlock{}, why
		}
		return ResidualBlock{Name: w.Name, Weight: w.Name, Bias: bias, Last: w}, ""
	case "MatMul":
		w, why := weightOf(p, 1)
		if why != "" {
			return ResidualBlock{}, why
		}
		return ResidualBlock{Name: w.Name, Weight: w.Name, Last: w}, ""
	case "Gemm", "Conv":
		w, why := weightOf(p, 1)
		if why != "" {
			return ResidualBlock{}, why
		}
		b := ResidualBlock{Name: w.Name, Weight: w.Name, Last: w}
		if len(p.Inputs) > 2 && p.Inputs[2] != "" {
			if !floatInit(p.Inputs[2]) {
				return ResidualBlock{}, fmt.Sprintf("bias %q of %s %q is not a float32 initializer used once", p.Inputs[2], p.OpType, p.Name)
			}
			b.Bias = p.Inputs[2]
		}
		return b, ""
	}
	return ResidualBlock{}, fmt.Sprintf("the branch ends in %s %q, not a linear layer", p.OpType, p.Name)
}

// DropBlocks returns a copy of m with the given blocks really removed:
// every use of a block's Add output is rewired to its skip input (a graph
// output keeps its name through an Identity), then nodes that no longer
// reach a graph output and unused initializers are deleted.
func DropBlocks(m *onnxio.Model, blocks []ResidualBlock) (*onnxio.Model, error) {
	out := m.Derive()
	out.EnsureNodeNames()
	isOutput := map[string]bool{}
	for _, o := range out.Outputs() {
		isOutput[o.Name] = true
	}
	for _, b := range blocks {
		// the skip input may itself have been rewired by an earlier drop
		n, err := out.Node(b.Add)
		if err != nil {
			return nil, fmt.Errorf("drop %q: %w", b.Name, err)
		}
		skip := ""
		for _, in := range n.Inputs {
			if in != b.Branch {
				skip = in
			}
		}
		if skip == "" || len(n.Outputs) != 1 {
			return nil, fmt.Errorf("drop %q: Add %q has changed", b.Name, b.Add)
		}
		if isOutput[n.Outputs[0]] {
			id := onnxio.Node{Name: n.Name, OpType: "Identity", Inputs: []string{skip}, Outputs: n.Outputs}
			if err := out.ReplaceNode(n.Name, []onnxio.Node{id}); err != nil {
				return nil, err
			}
			continue
		}
		out.RenameInput(n.Outputs[0], skip)
	}
	out.EliminateDeadCode()
	return out, nil
}

// dropSpace builds the keep/drop ladders: cost 1 for a kept block, 0 for
// a dropped one (every step −1, one group), so level switches keep the
// number of dropped blocks exact. The "uniform" start is last-k (the last
// Target blocks dropped); the heuristic scores each block by the loss of
// dropping it alone and drops the Target lowest (ShortGPT-like).
func dropSpace(m *onnxio.Model, ws []onnxio.Weight, hash string, opt LevelSearch, logf func(string, ...any)) (*space, error) {
	blocks, skipped, err := FindResidualBlocks(m, ws)
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		logf("residual Add %q skipped: %s", s.Add, s.Reason)
	}
	k := int(opt.Target)
	if float64(k) != opt.Target || k < 1 || k >= len(blocks) {
		return nil, fmt.Errorf("drop target %v: want an integer number of blocks in [1, %d) (%d residual blocks found)", opt.Target, len(blocks), len(blocks))
	}
	logf("%d residual blocks; dropping %d", len(blocks), k)
	db := &LevelDB{ModelHash: hash, Method: SpaceDrop, Build: func(_ context.Context, _ onnxio.Weight, v []float32, level int64) ([]float32, error) {
		if level == 1 {
			return make([]float32, len(v)), nil
		}
		return v, nil
	}}
	layers := make([]*searchLayer, len(blocks))
	biases := make([]*evalharness.Array, len(blocks)*2) // [i*2+level]
	var extra []string
	for i, b := range blocks {
		v, err := weightValues(m, b.Last)
		if err != nil {
			return nil, err
		}
		l := &searchLayer{w: b.Last, dense: v, keys: []int64{0, 1}, costs: []int64{1, 0}}
		if i >= len(blocks)-k {
			l.offset = 1
		}
		layers[i] = l
		if b.Bias != "" {
			t, err := m.Initializer(b.Bias)
			if err != nil {
				return nil, err
			}
			bv, err := t.Float32()
			if err != nil {
				return nil, err
			}
			biases[i*2] = evalharness.FromFloat32(t.Shape, bv)
			biases[i*2+1] = evalharness.FromFloat32(t.Shape, make([]float32, len(bv)))
			extra = append(extra, b.Bias)
		}
	}
	apply := func(_ context.Context, m *onnxio.Model, lv []int) (*onnxio.Model, error) {
		var drop []ResidualBlock
		for i, b := range blocks {
			if lv[i] == 1 {
				drop = append(drop, b)
			}
		}
		return DropBlocks(m, drop)
	}
	return &space{
		name: SpaceDrop, method: "zero-branch", layers: layers, db: db,
		achieved:    func(cost int64) float64 { return float64(int64(len(blocks)) - cost) },
		fraction:    func(l *searchLayer, k int) float64 { return float64(l.keys[k]) },
		apply:       apply,
		extraInputs: extra,
		extraFeed: func(i, level int) map[string]*evalharness.Array {
			if blocks[i].Bias == "" {
				return nil
			}
			return map[string]*evalharness.Array{blocks[i].Bias: biases[i*2+level]}
		},
		uniformName: "last-k",
		heurName:    "block-score",
		heuristic: func(ctx context.Context, ev search.Evaluator, all []int) ([]int, error) {
			scores := make([]float64, len(blocks))
			for i := range blocks {
				lv := make([]int, len(blocks))
				lv[i] = 1
				s, err := ev.Fitness(ctx, lv, all)
				if err != nil {
					return nil, err
				}
				scores[i] = s
				logf("block %q dropped alone: loss %.6g", blocks[i].Name, s)
			}
			idx := make([]int, len(blocks))
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
			lv := make([]int, len(blocks))
			for _, i := range idx[:k] {
				lv[i] = 1
			}
			return lv, nil
		},
	}, nil
}
