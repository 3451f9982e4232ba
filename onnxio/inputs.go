package onnxio

import "fmt"

// DropStaleWeightInputs removes from cand's graph inputs the overridable
// weights that a transform rewrote: names that were both a graph input and
// an initializer in ref, and that in cand are no longer an initializer of
// the declared element type (the transform replaced, renamed or retyped
// the tensor). Such an input would otherwise become a required input (the
// initializer is gone) or contradict its initializer's type. It returns
// the removed names; a removed input that cand still reads without an
// initializer is an error (the model would need it fed).
func DropStaleWeightInputs(cand, ref *Model) ([]string, error) {
	overridable := map[string]bool{}
	for _, v := range ref.p.GetGraph().GetInput() {
		if _, ok := ref.index[v.GetName()]; ok {
			overridable[v.GetName()] = true
		}
	}
	if len(overridable) == 0 {
		return nil, nil
	}
	g := cand.p.Graph
	read, produced := map[string]bool{}, map[string]bool{}
	for _, n := range g.GetNode() {
		for _, o := range n.Output {
			produced[o] = true
		}
		for _, in := range n.Input {
			read[in] = true
		}
		for _, sub := range subgraphs(n) {
			for _, name := range freeNames(sub.g) {
				read[name] = true
			}
		}
	}
	var removed []string
	kept := g.Input[:0]
	for _, v := range g.Input {
		name := v.GetName()
		if !overridable[name] {
			kept = append(kept, v)
			continue
		}
		i, isInit := cand.index[name]
		declared := DType(v.GetType().GetTensorType().GetElemType())
		if isInit && DType(g.Initializer[i].GetDataType()) == declared {
			kept = append(kept, v)
			continue
		}
		if !isInit && read[name] && !produced[name] {
			return nil, fmt.Errorf("%w: graph input %q was weight %q, which the transform removed while a node still reads it", ErrFormat, name, name)
		}
		removed = append(removed, name)
	}
	g.Input = kept
	return removed, nil
}
