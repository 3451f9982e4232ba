package onnxio

import "sort"

// ResidualAdd is an Add node of the main graph that closes a residual
// connection: one input (Skip) also reaches the other (Branch) through the
// nodes of Path.
type ResidualAdd struct {
	// Node is the Add's index in Model.Nodes.
	Node int
	// Skip is the value carried around the branch, Branch the value
	// computed from it.
	Skip, Branch string
	// Path lists, in graph order, the nodes on a path from Skip to Branch:
	// the ancestors of Branch that depend on Skip.
	Path []int
}

// ResidualAdds lists the residual Adds of the main graph in graph order:
// Add nodes of the default domain with two distinct inputs, neither an
// initializer, one of which (the skip) is produced by an ancestor of the
// other (the branch) or, being a graph input, is read by one. It reads the
// graph only, no tensor data.
func (m *Model) ResidualAdds() []ResidualAdd {
	nodes := m.Nodes()
	producer := map[string]int{}
	consumers := map[string][]int{}
	for i, n := range nodes {
		for _, o := range n.Outputs {
			producer[o] = i
		}
		for _, in := range n.Inputs {
			if in != "" {
				consumers[in] = append(consumers[in], i)
			}
		}
	}
	ancestors := func(v string) map[int]bool {
		seen := map[int]bool{}
		stack := []string{v}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			i, ok := producer[x]
			if !ok || seen[i] {
				continue
			}
			seen[i] = true
			stack = append(stack, nodes[i].Inputs...)
		}
		return seen
	}
	descendants := func(v string) map[int]bool {
		seen := map[int]bool{}
		stack := []string{v}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, i := range consumers[x] {
				if !seen[i] {
					seen[i] = true
					stack = append(stack, nodes[i].Outputs...)
				}
			}
		}
		return seen
	}
	// reaches reports whether skip feeds the ancestors anc of a branch:
	// produced by one of them, or a graph input one of them reads.
	reaches := func(anc map[int]bool, skip string) bool {
		if i, ok := producer[skip]; ok {
			return anc[i]
		}
		for i := range anc {
			for _, in := range nodes[i].Inputs {
				if in == skip {
					return true
				}
			}
		}
		return false
	}
	var out []ResidualAdd
	for k, n := range nodes {
		if n.OpType != "Add" || n.Domain != "" || len(n.Inputs) != 2 {
			continue
		}
		a, b := n.Inputs[0], n.Inputs[1]
		if a == b || m.HasInitializer(a) || m.HasInitializer(b) {
			continue
		}
		var r ResidualAdd
		var anc map[int]bool
		if x := ancestors(b); reaches(x, a) {
			r, anc = ResidualAdd{Node: k, Skip: a, Branch: b}, x
		} else if x := ancestors(a); reaches(x, b) {
			r, anc = ResidualAdd{Node: k, Skip: b, Branch: a}, x
		} else {
			continue
		}
		desc := descendants(r.Skip)
		for i := range anc {
			if desc[i] {
				r.Path = append(r.Path, i)
			}
		}
		sort.Ints(r.Path)
		out = append(out, r)
	}
	return out
}
