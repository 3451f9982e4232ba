package autodiff

import (
	"errors"
	"fmt"
	"strings"

	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrGraph reports a main graph that cannot be differentiated or probed
// because it is not a valid dataflow graph: a node reads a value that
// nothing defines, or the nodes form a cycle.
var ErrGraph = errors.New("autodiff: invalid graph")

// CheckGraph returns an ErrGraph naming the first node input that is
// neither a graph input, an initializer nor a node output, or a cycle of
// nodes (by name and op). Names used only inside subgraphs are not
// checked. VJP, Gradients and ProbeModel call it first.
func CheckGraph(m *onnxio.Model) error {
	nodes := m.Nodes()
	defined := map[string]bool{"": true}
	for _, in := range m.Inputs() {
		defined[in.Name] = true
	}
	for _, name := range m.Initializers() {
		defined[name] = true
	}
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.Outputs {
			if o != "" {
				producer[o] = i
			}
		}
	}
	for _, n := range nodes {
		for _, in := range n.Inputs {
			if _, ok := producer[in]; !ok && !defined[in] {
				return fmt.Errorf("%w: node %s reads %q, which is no graph input, initializer or node output", ErrGraph, nodeLabel(n), in)
			}
		}
	}
	// depth-first search over the producers of each node's inputs; a node
	// met again while on the stack closes a cycle
	const (
		unseen = iota
		onStack
		done
	)
	state := make([]int, len(nodes))
	type frame struct{ node, next int }
	for root := range nodes {
		if state[root] != unseen {
			continue
		}
		stack := []frame{{root, 0}}
		state[root] = onStack
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			n := nodes[top.node]
			if top.next == len(n.Inputs) {
				state[top.node] = done
				stack = stack[:len(stack)-1]
				continue
			}
			in := n.Inputs[top.next]
			top.next++
			p, ok := producer[in]
			if !ok {
				continue
			}
			switch state[p] {
			case unseen:
				state[p] = onStack
				stack = append(stack, frame{p, 0})
			case onStack:
				var cycle []string
				for k := len(stack) - 1; k >= 0; k-- {
					cycle = append(cycle, nodeLabel(nodes[stack[k].node]))
					if stack[k].node == p {
						break
					}
				}
				return fmt.Errorf("%w: the nodes form a cycle: %s", ErrGraph, strings.Join(cycle, " ← "))
			}
		}
	}
	return nil
}

func nodeLabel(n onnxio.Node) string {
	if n.Name == "" {
		return fmt.Sprintf("(unnamed %s)", n.OpType)
	}
	return fmt.Sprintf("%q (%s)", n.Name, n.OpType)
}
