package onnxio

import "fmt"

// EliminateDeadCode removes, in place, the nodes of the main graph whose
// outputs reach no graph output and then the initializers no node (and no
// graph output) uses. Values captured by subgraphs are not tracked, so a
// model with If/Loop/Scan nodes (or other graph-valued attributes) is
// refused.
func (m *Model) EliminateDeadCode() error {
	nodes := m.Nodes()
	for _, n := range nodes {
		if n.OpType == "If" || n.OpType == "Loop" || n.OpType == "Scan" {
			return fmt.Errorf("dead-code elimination: node %q has a subgraph", n.Name)
		}
		for _, a := range n.Attrs {
			if a.Type == KindOther {
				return fmt.Errorf("dead-code elimination: node %q has attribute %q of an unsupported kind (a subgraph?)", n.Name, a.Name)
			}
		}
	}
	live := map[string]bool{}
	for _, o := range m.Outputs() {
		live[o.Name] = true
	}
	keep := make([]bool, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		for _, o := range n.Outputs {
			keep[i] = keep[i] || live[o]
		}
		if !keep[i] {
			continue
		}
		for _, in := range n.Inputs {
			live[in] = true
		}
	}
	g := m.p.Graph
	kept := g.Node[:0]
	for i, p := range g.Node {
		if keep[i] {
			kept = append(kept, p)
		}
	}
	for i := len(kept); i < len(g.Node); i++ {
		g.Node[i] = nil
	}
	g.Node = kept
	for _, name := range m.Initializers() {
		if !live[name] {
			if err := m.RemoveInitializer(name); err != nil {
				return err
			}
		}
	}
	return nil
}
