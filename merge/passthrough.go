package merge

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrPassthrough is wrapped by the refusals of a passthrough merge: layer
// stacks that rewriting the graph cannot express.
var ErrPassthrough = errors.New("merge: passthrough")

// StackSlice is one output slice of a passthrough merge (one of mergekit's
// slices, which take one source each under passthrough): layers
// [Start, End) of input model Model, the layers found by FindLayers.
type StackSlice struct {
	Model      int
	Start, End int
}

// layerSpan is one layer of a model's graph along its residual stream: the
// stream value it reads (In) and the one it writes (Out), the nodes
// computing Out from In in graph order (Body: those that depend on In,
// and the constant nodes they read), and the initializers Body reads.
type layerSpan struct {
	In, Out string
	Body    []int
	Tensors []string
	consts  map[int]bool // Body nodes that only compute constants
}

// stackGraph is one input model of a passthrough merge, analyzed.
type stackGraph struct {
	m     *onnxio.Model
	label string
	nodes []onnxio.Node
	spans []layerSpan
	// layerNode marks the non-constant nodes inside a layer.
	layerNode map[int]bool
	// outside lists the nodes outside the layers (graph order) and the
	// initializers they read.
	outside        []int
	outsideTensors []string
}

// analyzeStack finds the layers of m (FindLayers) and checks that they
// form one residual stream that a graph rewrite can cut into layers: each
// layer's residual Adds add to the stream in turn, the next layer reads
// the last Add's output, and nothing computed inside a layer is read
// outside it.
func analyzeStack(m *onnxio.Model, label string) (*stackGraph, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: "+format, append([]any{ErrPassthrough, label}, args...)...)
	}
	l := FindLayers(m)
	if l.Count == 0 {
		return nil, bad("no layers found (no residual Add whose branch holds a MatMul, Gemm or Conv weight)")
	}
	g := &stackGraph{m: m, label: label, nodes: m.Nodes(), layerNode: map[int]bool{}}
	producer := map[string]int{}
	consumers := map[string][]int{}
	for i, n := range g.nodes {
		if onnxio.HasSubgraphs(n) {
			return nil, bad("node %q holds a subgraph: its captured values cannot be followed", n.Name)
		}
		for _, o := range n.Outputs {
			producer[o] = i
		}
		for _, in := range n.Inputs {
			if in != "" {
				consumers[in] = append(consumers[in], i)
			}
		}
	}
	graphOut := map[string]bool{}
	for _, o := range m.Outputs() {
		graphOut[o.Name] = true
	}
	// constant nodes: every input an initializer or another constant's output
	isConst := map[int]bool{}
	for i, n := range g.nodes {
		c := true
		for _, in := range n.Inputs {
			if in == "" || m.HasInitializer(in) {
				continue
			}
			p, ok := producer[in]
			c = c && ok && isConst[p]
		}
		isConst[i] = c
	}
	walk := func(start []int, next func(int) []int) map[int]bool {
		seen := map[int]bool{}
		for len(start) > 0 {
			i := start[len(start)-1]
			start = start[:len(start)-1]
			if seen[i] {
				continue
			}
			seen[i] = true
			start = append(start, next(i)...)
		}
		return seen
	}
	after := func(v string) map[int]bool { // nodes depending on value v
		return walk(slices.Clone(consumers[v]), func(i int) []int {
			var out []int
			for _, o := range g.nodes[i].Outputs {
				out = append(out, consumers[o]...)
			}
			return out
		})
	}
	before := func(v string) map[int]bool { // nodes v depends on
		p, ok := producer[v]
		if !ok {
			return nil
		}
		return walk([]int{p}, func(i int) []int {
			var out []int
			for _, in := range g.nodes[i].Inputs {
				if q, ok := producer[in]; ok {
					out = append(out, q)
				}
			}
			return out
		})
	}
	for k, blocks := range l.blocks {
		in := blocks[0].Skip
		cur := in
		for _, b := range blocks {
			add := g.nodes[b.Node]
			if b.Skip != cur || len(add.Outputs) != 1 {
				return nil, bad("layer %d: residual Add %q adds to %q, not to the residual stream %q", k, add.Name, b.Skip, cur)
			}
			cur = add.Outputs[0]
		}
		if k > 0 && in != g.spans[k-1].Out {
			return nil, bad("layer %d reads %q, not layer %d's output %q: the layers are not one residual stream", k, in, k-1, g.spans[k-1].Out)
		}
		g.spans = append(g.spans, layerSpan{In: in, Out: cur, consts: map[int]bool{}})
	}
	first := after(g.spans[0].In)
	for k := range g.spans {
		sp := &g.spans[k]
		anc := before(sp.Out)
		body := map[int]bool{}
		for i := range after(sp.In) {
			if anc[i] {
				body[i] = true
				g.layerNode[i] = true
			}
		}
		// the constant nodes the layer reads come with it
		var stack []int
		for i := range body {
			stack = append(stack, i)
		}
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, in := range g.nodes[i].Inputs {
				p, ok := producer[in]
				if !ok || body[p] || !isConst[p] {
					continue
				}
				body[p], sp.consts[p] = true, true
				stack = append(stack, p)
			}
		}
		for i := range body {
			sp.Body = append(sp.Body, i)
		}
		slices.Sort(sp.Body)
	}
	for k := range g.spans {
		sp := &g.spans[k]
		seen := map[string]bool{}
		for _, i := range sp.Body {
			n := g.nodes[i]
			for _, in := range n.Inputs {
				switch p, ok := producer[in]; {
				case in == "" || seen[in]:
				case m.HasInitializer(in):
					seen[in] = true
					sp.Tensors = append(sp.Tensors, in)
				case in == sp.In || !ok:
					// the stream, or a graph input
				case slices.Contains(sp.Body, p):
				case first[p]:
					return nil, bad("layer %d: node %q reads %q, computed after the first layer and not carried by the residual stream", k, n.Name, in)
				}
			}
			if sp.consts[i] {
				continue
			}
			for _, o := range n.Outputs {
				if o == sp.Out {
					continue
				}
				if graphOut[o] {
					return nil, bad("layer %d: its value %q is a graph output", k, o)
				}
				for _, c := range consumers[o] {
					if !slices.Contains(sp.Body, c) {
						return nil, bad("layer %d: its value %q is read by node %q outside the layer", k, o, g.nodes[c].Name)
					}
				}
			}
		}
	}
	for k, sp := range g.spans {
		if graphOut[sp.Out] {
			return nil, bad("layer %d's output %q is a graph output (a stack cannot keep it)", k, sp.Out)
		}
	}
	seen := map[string]bool{}
	for i, n := range g.nodes {
		if g.layerNode[i] {
			continue
		}
		used := false
		for _, sp := range g.spans {
			used = used || sp.consts[i]
		}
		for _, o := range n.Outputs {
			used = used && len(consumers[o]) > 0
			for _, c := range consumers[o] {
				used = used && g.layerNode[c]
			}
		}
		if used {
			continue // a constant read by the layers only
		}
		g.outside = append(g.outside, i)
		for _, in := range n.Inputs {
			if m.HasInitializer(in) && !seen[in] {
				seen[in] = true
				g.outsideTensors = append(g.outsideTensors, in)
			}
		}
	}
	return g, nil
}

// layerSig describes a layer's structure for comparisons: its ops and
// its initializers' types and shapes, in graph order.
func (g *stackGraph) layerSig(k int) []string {
	return g.sig(g.spans[k].Body, g.spans[k].Tensors, false)
}

// outsideSig describes the nodes and initializers outside the layers
// (the initializers by name too: the tail's are paired by name).
func (g *stackGraph) outsideSig() []string { return g.sig(g.outside, g.outsideTensors, true) }

func (g *stackGraph) sig(nodes []int, tensors []string, named bool) []string {
	var sig []string
	for _, i := range nodes {
		n := g.nodes[i]
		sig = append(sig, "node "+n.Domain+"."+n.OpType)
	}
	for _, t := range tensors {
		dt, shape, _ := g.m.InitializerInfo(t)
		if named {
			sig = append(sig, fmt.Sprintf("tensor %q %v %v", t, dt, shape))
		} else {
			sig = append(sig, fmt.Sprintf("tensor %v %v", dt, shape))
		}
	}
	return sig
}

// firstDiff returns the first entry where a and b differ, as text.
func firstDiff(a, b []string) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		x, y := "(nothing)", "(nothing)"
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("%s against %s", x, y)
		}
	}
	return ""
}

// Stack is mergekit's passthrough merge: a model whose layers are the
// slices' layers in order, each a copy of one input layer (its nodes and
// initializers, renamed "passthrough.J." + the original name for output
// layer J), chained along the residual stream. Layers are FindLayers'
// (repeated residual blocks found from the graph). What comes before the
// first layer (embeddings) is the first slice's model's, what comes after
// the last (final norm, head) the last slice's model's, as in mergekit; a
// tensor read on both sides (tied embeddings) stays the first's.
//
// It refuses, wrapping ErrPassthrough and naming the model, layer, node or
// tensor: graphs whose layers do not chain along one residual stream
// (values computed inside a layer read outside it, subgraphs), models
// whose parts outside the layers differ in structure, layers of another
// structure than the first selected one (ops, tensor types and shapes),
// models importing other opsets, and ranges outside a model's layers.
// labels name the models in errors.
func Stack(models []*onnxio.Model, labels []string, stack []StackSlice) (*onnxio.Model, error) {
	if len(stack) == 0 {
		return nil, fmt.Errorf("%w: no slices", ErrPassthrough)
	}
	label := func(i int) string {
		if i < len(labels) {
			return labels[i]
		}
		return fmt.Sprintf("model %d", i+1)
	}
	graphs := map[int]*stackGraph{}
	for si, s := range stack {
		if s.Model < 0 || s.Model >= len(models) {
			return nil, fmt.Errorf("%w: slice %d: no model %d", ErrPassthrough, si+1, s.Model)
		}
		if graphs[s.Model] == nil {
			g, err := analyzeStack(models[s.Model], label(s.Model))
			if err != nil {
				return nil, err
			}
			graphs[s.Model] = g
		}
		n := len(graphs[s.Model].spans)
		if s.Start < 0 || s.End > n || s.Start >= s.End {
			return nil, fmt.Errorf("%w: slice %d: layer_range [%d, %d] of %s, which has %d layers (want 0 ≤ start < end ≤ %d)", ErrPassthrough, si+1, s.Start, s.End, label(s.Model), n, n)
		}
	}
	frame, last := graphs[stack[0].Model], graphs[stack[len(stack)-1].Model]
	ref := frame.layerSig(stack[0].Start)
	outRef := frame.outsideSig()
	for _, s := range stack {
		g := graphs[s.Model]
		if !maps.Equal(frame.m.Opsets(), g.m.Opsets()) {
			return nil, fmt.Errorf("%w: %s imports %s, %s %s: layers of one cannot run under the other's", ErrPassthrough, frame.label, opsetText(frame.m), g.label, opsetText(g.m))
		}
		if d := firstDiff(outRef, g.outsideSig()); d != "" {
			return nil, fmt.Errorf("%w: %s and %s differ outside their layers: %s", ErrPassthrough, frame.label, g.label, d)
		}
		for k := s.Start; k < s.End; k++ {
			if d := firstDiff(ref, g.layerSig(k)); d != "" {
				return nil, fmt.Errorf("%w: layer %d of %s and layer %d of %s have different shapes: %s", ErrPassthrough, stack[0].Start, frame.label, k, g.label, d)
			}
		}
	}
	out := frame.m.Clone()
	out.EnsureNodeNames()
	outNodes := out.Nodes()
	names := map[string]bool{}     // values and initializers
	nodeNames := map[string]bool{} // nodes (a namespace of their own)
	for _, n := range outNodes {
		nodeNames[n.Name] = true
		for _, o := range n.Outputs {
			names[o] = true
		}
	}
	for _, t := range out.Initializers() {
		names[t] = true
	}
	for _, v := range out.Inputs() {
		names[v.Name] = true
	}
	// the frame's own layers go (their constants with them, below)
	var drop []string
	for i := range frame.nodes {
		if frame.layerNode[i] {
			drop = append(drop, outNodes[i].Name)
		}
	}
	for _, name := range drop {
		if err := out.RemoveNode(name); err != nil {
			return nil, err
		}
	}
	// what follows the layers comes from the last slice's model
	finalOut := frame.spans[len(frame.spans)-1].Out
	if last != frame {
		lastAfter := map[int]bool{}
		// the suffix: outside nodes depending on the last layer's output
		dep := map[string]bool{last.spans[len(last.spans)-1].Out: true}
		for _, i := range last.outside {
			n := last.nodes[i]
			for _, in := range n.Inputs {
				if dep[in] {
					lastAfter[i] = true
				}
			}
			if lastAfter[i] {
				for _, o := range n.Outputs {
					dep[o] = true
				}
			}
		}
		// a tensor the part before the layers reads too (tied embeddings)
		// stays the first slice's model's, as mergekit ties them
		before := map[string]bool{}
		for _, i := range last.outside {
			if !lastAfter[i] {
				for _, in := range last.nodes[i].Inputs {
					before[in] = true
				}
			}
		}
		for _, i := range last.outside {
			if !lastAfter[i] {
				continue
			}
			for _, in := range last.nodes[i].Inputs {
				if !last.m.HasInitializer(in) || before[in] {
					continue
				}
				t, err := last.m.Initializer(in)
				if err != nil {
					return nil, err
				}
				if err := out.SetInitializer(t.Clone()); err != nil {
					return nil, err
				}
			}
		}
	}
	total := 0
	for _, s := range stack {
		total += s.End - s.Start
	}
	stream := frame.spans[0].In
	var added []onnxio.Node
	j := 0
	for _, s := range stack {
		g := graphs[s.Model]
		for k := s.Start; k < s.End; k++ {
			sp := g.spans[k]
			prefix := fmt.Sprintf("passthrough.%d.", j)
			rename := map[string]string{}
			fresh := func(used map[string]bool, old string) (string, error) {
				nn := prefix + old
				if used[nn] {
					return "", fmt.Errorf("%w: name %q is already in the model", ErrPassthrough, nn)
				}
				used[nn] = true
				return nn, nil
			}
			for _, i := range sp.Body {
				for _, o := range g.nodes[i].Outputs {
					if o == "" {
						continue
					}
					nn, err := fresh(names, o)
					if err != nil {
						return nil, err
					}
					rename[o] = nn
				}
			}
			if j == total-1 {
				rename[sp.Out] = finalOut
			}
			for _, t := range sp.Tensors {
				nn, err := fresh(names, t)
				if err != nil {
					return nil, err
				}
				rename[t] = nn
				src, err := g.m.Initializer(t)
				if err != nil {
					return nil, err
				}
				c := src.Clone()
				c.Name = nn
				if err := out.SetInitializer(c); err != nil {
					return nil, err
				}
			}
			for _, i := range sp.Body {
				n := g.nodes[i]
				n.Inputs, n.Outputs = slices.Clone(n.Inputs), slices.Clone(n.Outputs)
				name := n.Name
				if name == "" {
					name = fmt.Sprintf("node%d", i)
				}
				var err error
				if n.Name, err = fresh(nodeNames, name); err != nil {
					return nil, err
				}
				for x, in := range n.Inputs {
					switch {
					case in == sp.In:
						n.Inputs[x] = stream
					case rename[in] != "":
						n.Inputs[x] = rename[in]
					}
				}
				for x, o := range n.Outputs {
					if o != "" {
						n.Outputs[x] = rename[o]
					}
				}
				added = append(added, n)
			}
			stream = rename[sp.Out]
			j++
		}
	}
	if err := out.InsertNodes(added...); err != nil {
		return nil, fmt.Errorf("%w: the stacked graph: %v", ErrPassthrough, err)
	}
	out.EliminateDeadCode()
	return out, nil
}

// opsetText lists m's opset imports, "ai.onnx 17, com.microsoft 1".
func opsetText(m *onnxio.Model) string {
	var parts []string
	for d, v := range m.Opsets() {
		if d == "" {
			d = "ai.onnx"
		}
		parts = append(parts, fmt.Sprintf("%s %d", d, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
