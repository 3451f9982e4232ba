package merge

import (
	"fmt"
	"sort"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// Layers are the repeated blocks of a model found from its graph, the
// ONNX counterpart of mergekit's decoder layers (model.layers.N), so that
// gradient parameters and filters mean what they mean in mergekit.
//
// Discovery: a residual sub-block is an Add node of two computed values
// (no initializer) where one, the skip, is an ancestor of the other, the
// branch, and a MatMul/Gemm/Conv weight lies on a path from skip to branch
// (the rule of pipeline's FindResidualBlocks). Its tensors are the
// initializers read by the nodes on those paths (ancestors of the branch
// that depend on the skip). The sub-blocks, in graph order, are grouped
// into layers: when some hold attention (a Softmax), a layer starts at
// each attention sub-block (mergekit's decoder layer: attention, MLP);
// otherwise by the smallest period p below their count such that
// sub-block i and i + p have the same operator multiset, or one sub-block
// per layer when none fits. A tensor belongs to the first
// sub-block whose paths read it; every other tensor is outside the layers.
//
// Names for filters: each tensor also gets a mergekit-style name —
// "model.layers.K.self_attn.<name>" in a sub-block holding a Softmax,
// "model.layers.K.mlp.<name>" in another, "input_layernorm" /
// "post_attention_layernorm" for the normalization weights (read by a
// LayerNormalization, SimplifiedLayerNormalization or RMSNormalization
// node) of an attention / other sub-block, "model.embed_tokens.<name>"
// before the first layer, "model.norm.<name>" (normalization weights) or
// "lm_head.<name>" after the last. A filter matches when it is a substring
// of the ONNX name or of this name, as mergekit matches substrings of its
// parameter names.
type Layers struct {
	// Count is the number of layers (0 when the graph has no residual
	// sub-block).
	Count int
	// Layer maps each tensor inside a layer to its index.
	Layer map[string]int
	// Alias is each tensor's mergekit-style name.
	Alias map[string]string
	// blocks are the residual sub-blocks of each layer, in graph order
	// (the passthrough merge follows the residual stream through them).
	blocks [][]onnxio.ResidualAdd
}

// T returns the interpolation position of tensor name for gradients:
// k/(L − 1) for layer k of L (1 when L = 1), and 0 outside the layers —
// mergekit evaluates embeddings, the final norm and the head at t = 0.
func (l *Layers) T(name string) float64 {
	k, ok := l.Layer[name]
	if !ok {
		return 0
	}
	if l.Count <= 1 {
		return 1
	}
	return float64(k) / float64(l.Count-1)
}

// FindLayers finds the layers of m (see Layers). It reads the graph only,
// no tensor data.
func FindLayers(m *onnxio.Model) *Layers {
	nodes := m.Nodes()
	consumers := map[string][]int{}
	for i, n := range nodes {
		for _, in := range n.Inputs {
			if in != "" {
				consumers[in] = append(consumers[in], i)
			}
		}
	}
	isLinear := func(op string) bool { return op == "MatMul" || op == "Gemm" || op == "Conv" }
	isNorm := func(op string) bool {
		return op == "LayerNormalization" || op == "SimplifiedLayerNormalization" || op == "RMSNormalization"
	}
	type sub struct {
		tensors []string
		norms   map[string]bool
		attn    bool
		sig     string
		add     onnxio.ResidualAdd
	}
	var subs []sub
	for _, r := range m.ResidualAdds() {
		path := r.Path
		s := sub{norms: map[string]bool{}, add: r}
		withWeight := false
		var ops []string
		seen := map[string]bool{}
		for _, i := range path {
			nd := nodes[i]
			ops = append(ops, nd.OpType)
			if nd.OpType == "Softmax" {
				s.attn = true
			}
			for _, in := range nd.Inputs {
				if in == "" || !m.HasInitializer(in) || seen[in] {
					continue
				}
				seen[in] = true
				s.tensors = append(s.tensors, in)
				if isLinear(nd.OpType) {
					withWeight = true
				}
				if isNorm(nd.OpType) {
					s.norms[in] = true
				}
			}
		}
		if !withWeight {
			continue
		}
		sort.Strings(ops)
		s.sig = strings.Join(ops, ",")
		subs = append(subs, s)
	}
	l := &Layers{Layer: map[string]int{}, Alias: map[string]string{}}
	if len(subs) == 0 {
		for _, n := range m.Initializers() {
			l.Alias[n] = n
		}
		return l
	}
	layerOf := make([]int, len(subs))
	attn := false
	for _, sb := range subs {
		attn = attn || sb.attn
	}
	if attn {
		// a layer starts at each attention sub-block (a decoder layer:
		// attention, then the MLP and whatever follows it)
		k := -1
		for si, sb := range subs {
			if sb.attn || k < 0 {
				k++
			}
			layerOf[si] = k
		}
		l.Count = k + 1
	} else {
		period := 1 // no repetition: every sub-block is a layer
		for p := 1; p < len(subs); p++ {
			if len(subs)%p != 0 {
				continue
			}
			ok := true
			for i := 0; i+p < len(subs) && ok; i++ {
				ok = subs[i].sig == subs[i+p].sig
			}
			if ok {
				period = p
				break
			}
		}
		for si := range subs {
			layerOf[si] = si / period
		}
		l.Count = len(subs) / period
	}
	l.blocks = make([][]onnxio.ResidualAdd, l.Count)
	for si, s := range subs {
		l.blocks[layerOf[si]] = append(l.blocks[layerOf[si]], s.add)
	}
	firstLayerNode := len(nodes)
	for si, s := range subs {
		k := layerOf[si]
		for _, t := range s.tensors {
			if _, done := l.Layer[t]; done {
				continue
			}
			l.Layer[t] = k
			part := "mlp"
			if s.attn {
				part = "self_attn"
			}
			switch {
			case s.norms[t] && s.attn:
				part = "input_layernorm"
			case s.norms[t]:
				part = "post_attention_layernorm"
			}
			l.Alias[t] = fmt.Sprintf("model.layers.%d.%s.%s", k, part, t)
			for _, i := range consumers[t] {
				firstLayerNode = min(firstLayerNode, i)
			}
		}
	}
	for _, t := range m.Initializers() {
		if _, in := l.Layer[t]; in {
			continue
		}
		first, norm := len(nodes), false
		for _, i := range consumers[t] {
			first = min(first, i)
			norm = norm || isNorm(nodes[i].OpType)
		}
		switch {
		case first < firstLayerNode:
			l.Alias[t] = "model.embed_tokens." + t
		case norm:
			l.Alias[t] = "model.norm." + t
		default:
			l.Alias[t] = "lm_head." + t
		}
	}
	return l
}
