package rebasin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"

	"github.com/onnxpost/onnxpost/onnxio"
)

// ErrIncompatible is wrapped when two models do not have the same groups.
var ErrIncompatible = errors.New("rebasin: models are not of one architecture")

// Options sets weight matching.
type Options struct {
	Seed    int64 // order in which groups are visited (coordinate descent)
	MaxIter int   // passes over all groups; 0: 100
}

// Result is the outcome of an alignment of model B onto model A.
type Result struct {
	Groups []Group
	// Perms[g][i] is the unit of B that moves to position i of group g.
	Perms [][]int
	// Passes is the number of passes over the groups until none changed.
	Passes int
}

// Moved returns, per group, the fraction of units not at their own
// position.
func (r *Result) Moved() []float64 {
	out := make([]float64, len(r.Perms))
	for g, p := range r.Perms {
		n := 0
		for i, j := range p {
			if i != j {
				n++
			}
		}
		if len(p) > 0 {
			out[g] = float64(n) / float64(len(p))
		}
	}
	return out
}

// tensorData is one initializer held as float64 values.
type tensorData struct {
	t     *onnxio.Tensor
	v     []float64
	shape []int64
}

// axisUse is one axis of a tensor permuted by a group.
type axisUse struct {
	group, axis, block int
}

// sameGroups checks that a and b have the same groups (names, sizes,
// members) and returns a's.
func sameGroups(a, b *onnxio.Model) ([]Group, error) {
	ga, err := Groups(a)
	if err != nil {
		return nil, err
	}
	gb, err := Groups(b)
	if err != nil {
		return nil, err
	}
	if len(ga) != len(gb) {
		return nil, fmt.Errorf("%w: %d groups of hidden units against %d", ErrIncompatible, len(ga), len(gb))
	}
	for i := range ga {
		x, y := ga[i], gb[i]
		same := x.Name == y.Name && x.Size == y.Size && x.Heads == y.Heads && x.Attention == y.Attention && len(x.Members) == len(y.Members)
		for k := 0; same && k < len(x.Members); k++ {
			same = x.Members[k] == y.Members[k]
		}
		if !same {
			return nil, fmt.Errorf("%w: group %q (%d units) against %q (%d units)", ErrIncompatible, x.Name, x.Size, y.Name, y.Size)
		}
	}
	return ga, nil
}

// load reads every tensor that groups touch.
func load(m *onnxio.Model, groups []Group) (map[string]*tensorData, map[string][]axisUse, error) {
	data := map[string]*tensorData{}
	uses := map[string][]axisUse{}
	for gi, g := range groups {
		for _, mb := range g.Members {
			uses[mb.Tensor] = append(uses[mb.Tensor], axisUse{gi, mb.Axis, mb.Block})
			if data[mb.Tensor] != nil {
				continue
			}
			t, err := m.Initializer(mb.Tensor)
			if err != nil {
				return nil, nil, err
			}
			if !t.DType.IsFloat() {
				return nil, nil, fmt.Errorf("%w: %q is %v, not floating point", ErrUnsupported, mb.Tensor, t.DType)
			}
			v, err := t.Float64()
			if err != nil {
				return nil, nil, err
			}
			if mb.Axis >= len(t.Shape) || t.Shape[mb.Axis] != int64(g.Size*mb.Block) {
				return nil, nil, fmt.Errorf("%w: axis %d of %q (shape %v) does not hold %d×%d values", ErrUnsupported, mb.Axis, mb.Tensor, t.Shape, g.Size, mb.Block)
			}
			data[mb.Tensor] = &tensorData{t: t, v: v, shape: t.Shape}
		}
	}
	return data, uses, nil
}

// split returns the sizes before and after axis.
func split(shape []int64, axis int) (outer, length, inner int) {
	outer, inner = 1, 1
	for i, d := range shape {
		switch {
		case i < axis:
			outer *= int(d)
		case i > axis:
			inner *= int(d)
		}
	}
	return outer, int(shape[axis]), inner
}

// permuteAxis returns v with the blocks of axis permuted: block i of the
// result is block perm[i] of v.
func permuteAxis(v []float64, shape []int64, axis, block int, perm []int) []float64 {
	outer, length, inner := split(shape, axis)
	out := make([]float64, len(v))
	for o := 0; o < outer; o++ {
		for i, j := range perm {
			for b := 0; b < block; b++ {
				dst := (o*length + i*block + b) * inner
				src := (o*length + j*block + b) * inner
				copy(out[dst:dst+inner], v[src:src+inner])
			}
		}
	}
	_ = length
	return out
}

// WeightMatching finds the permutations of b's hidden units that best
// match a's weights (Git Re-Basin weight matching): coordinate descent over
// the groups in an order drawn from opt.Seed, each step maximizing
// Σ_tensors ⟨A, P B⟩ over the group's permutation P with the others fixed,
// until a pass changes nothing. Neither model is modified.
func WeightMatching(ctx context.Context, a, b *onnxio.Model, opt Options) (*Result, error) {
	groups, err := sameGroups(a, b)
	if err != nil {
		return nil, err
	}
	da, uses, err := load(a, groups)
	if err != nil {
		return nil, err
	}
	db, _, err := load(b, groups)
	if err != nil {
		return nil, err
	}
	for name, x := range da {
		if y := db[name]; len(x.v) != len(y.v) {
			return nil, fmt.Errorf("%w: %q has shape %v against %v", ErrIncompatible, name, x.shape, y.shape)
		}
	}
	perms := make([][]int, len(groups))
	for g := range groups {
		perms[g] = identity(groups[g].Size)
	}
	maxIter := opt.MaxIter
	if maxIter <= 0 {
		maxIter = 100
	}
	rng := rand.New(rand.NewSource(opt.Seed))
	res := &Result{Groups: groups, Perms: perms}
	partner := partners(groups)
	for pass := 0; pass < maxIter; pass++ {
		res.Passes = pass + 1
		changed := false
		for _, g := range rng.Perm(len(groups)) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			cost := func(g int) []float64 {
				n := groups[g].Size
				c := make([]float64, n*n)
				for _, mb := range groups[g].Members {
					// B with every other group's permutation applied.
					bv := db[mb.Tensor].v
					for _, u := range uses[mb.Tensor] {
						if u.group != g {
							bv = permuteAxis(bv, db[mb.Tensor].shape, u.axis, u.block, perms[u.group])
						}
					}
					addCost(c, n, da[mb.Tensor].v, bv, da[mb.Tensor].shape, mb.Axis, mb.Block)
				}
				return c
			}
			ids := []int{g}
			if k, ok := partner[g]; ok {
				ids = append(ids, k)
			}
			cs := make([][]float64, len(ids))
			old := 0.0
			for k, id := range ids {
				cs[k] = cost(id)
				old += objective(cs[k], perms[id])
			}
			ps, best, err := solveJoint(cs, groups[g].Size, groups[g].Heads)
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", groups[g].Name, err)
			}
			if best > old+1e-12*math.Max(1, math.Abs(old)) {
				for k, id := range ids {
					perms[id] = ps[k]
				}
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	return res, nil
}

// addCost adds c[i, j] += Σ a[unit i] · b[unit j] over the axis's units.
func addCost(c []float64, n int, a, b []float64, shape []int64, axis, block int) {
	outer, length, inner := split(shape, axis)
	span := block * inner
	for o := 0; o < outer; o++ {
		base := o * length * inner
		for i := 0; i < n; i++ {
			ai := a[base+i*span : base+(i+1)*span]
			row := c[i*n : (i+1)*n]
			for j := 0; j < n; j++ {
				bj := b[base+j*span : base+(j+1)*span]
				s := 0.0
				for k, x := range ai {
					s += x * bj[k]
				}
				row[j] += s
			}
		}
	}
}

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

// Permute returns a copy of m whose hidden units are permuted: unit
// perms[g][i] of group g moves to position i. Values are moved, not
// recomputed, so the copy computes the same function as m (up to the
// order of floating-point sums inside the runtime). m is not modified.
func Permute(m *onnxio.Model, groups []Group, perms [][]int) (*onnxio.Model, error) {
	if len(perms) != len(groups) {
		return nil, fmt.Errorf("rebasin: %d permutations for %d groups", len(perms), len(groups))
	}
	for g, p := range perms {
		if len(p) != groups[g].Size {
			return nil, fmt.Errorf("rebasin: group %q: permutation of %d for %d units", groups[g].Name, len(p), groups[g].Size)
		}
		seen := make([]bool, len(p))
		for _, j := range p {
			if j < 0 || j >= len(p) || seen[j] {
				return nil, fmt.Errorf("rebasin: group %q: not a permutation", groups[g].Name)
			}
			seen[j] = true
		}
		if h := groups[g].Heads; h > 1 {
			hd := len(p) / h
			for i, j := range p {
				// A head moves whole; without a partner it stays in place.
				if j/hd != p[(i/hd)*hd]/hd || (groups[g].Attention == "" && i/hd != j/hd) {
					return nil, fmt.Errorf("rebasin: group %q: head %d of the result takes units from more than one head (or moves a head of a block whose other group is missing)", groups[g].Name, i/hd)
				}
			}
		}
	}
	for g, k := range partners(groups) {
		hd := groups[g].Size / groups[g].Heads
		for i := 0; i < groups[g].Size; i += hd {
			if perms[g][i]/hd != perms[k][i]/hd {
				return nil, fmt.Errorf("rebasin: groups %q and %q reorder the heads of one attention block differently", groups[g].Name, groups[k].Name)
			}
		}
	}
	data, uses, err := load(m, groups)
	if err != nil {
		return nil, err
	}
	out := m.Clone()
	for name, d := range data {
		v := d.v
		for _, u := range uses[name] {
			v = permuteAxis(v, d.shape, u.axis, u.block, perms[u.group])
		}
		t, err := onnxio.FromFloat64(name, d.t.DType, d.shape, v)
		if err != nil {
			return nil, err
		}
		if err := out.SetInitializer(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Align permutes m's hidden units onto ref's by weight matching and
// returns the permuted copy with the matching's result.
func Align(ctx context.Context, ref, m *onnxio.Model, opt Options) (*onnxio.Model, *Result, error) {
	r, err := WeightMatching(ctx, ref, m, opt)
	if err != nil {
		return nil, nil, err
	}
	out, err := Permute(m, r.Groups, r.Perms)
	if err != nil {
		return nil, nil, err
	}
	return out, r, nil
}

// partners pairs the two head groups of each attention block.
func partners(groups []Group) map[int]int {
	out := map[int]int{}
	by := map[string][]int{}
	for g, grp := range groups {
		if grp.Heads > 1 && grp.Attention != "" {
			by[grp.Attention] = append(by[grp.Attention], g)
		}
	}
	for _, ids := range by {
		if len(ids) == 2 && groups[ids[0]].Size == groups[ids[1]].Size && groups[ids[0]].Heads == groups[ids[1]].Heads {
			out[ids[0]], out[ids[1]] = ids[1], ids[0]
		}
	}
	return out
}

func objective(c []float64, perm []int) float64 {
	n := len(perm)
	s := 0.0
	for i, j := range perm {
		s += c[i*n+j]
	}
	return s
}

// solveJoint maximizes the sum over cs of Σ c[i, π_c(i)]: one cost matrix
// is solveGroup; two are the query/key and value/output groups of one
// attention block, whose heads are reordered together: for every pair of
// heads (i of A, j of B) the best within-head assignments of both are
// found, then one assignment of heads maximizes their sum.
func solveJoint(cs [][]float64, n, heads int) ([][]int, float64, error) {
	if len(cs) == 1 {
		p, v, err := solveGroup(cs[0], n, heads)
		return [][]int{p}, v, err
	}
	hd := n / heads
	sub := make([]float64, hd*hd)
	type cell struct {
		p [][]int
		v float64
	}
	cells := make([]cell, heads*heads)
	hv := make([]float64, heads*heads)
	for i := 0; i < heads; i++ {
		for j := 0; j < heads; j++ {
			cl := cell{}
			for _, c := range cs {
				for a := 0; a < hd; a++ {
					copy(sub[a*hd:(a+1)*hd], c[(i*hd+a)*n+j*hd:(i*hd+a)*n+j*hd+hd])
				}
				p, v, err := SolveLAP(sub, hd)
				if err != nil {
					return nil, 0, err
				}
				cl.p = append(cl.p, p)
				cl.v += v
			}
			cells[i*heads+j] = cl
			hv[i*heads+j] = cl.v
		}
	}
	sigma, total, err := SolveLAP(hv, heads)
	if err != nil {
		return nil, 0, err
	}
	out := make([][]int, len(cs))
	for k := range cs {
		out[k] = make([]int, n)
		for i, j := range sigma {
			for a, b := range cells[i*heads+j].p[k] {
				out[k][i*hd+a] = j*hd + b
			}
		}
	}
	return out, total, nil
}

// solveGroup maximizes Σ c[i, π(i)] over the permutations allowed in a
// group: any, or with heads > 1 those keeping each block of n/heads units
// in place (one assignment per block).
func solveGroup(c []float64, n, heads int) ([]int, float64, error) {
	if heads <= 1 {
		return SolveLAP(c, n)
	}
	if n%heads != 0 {
		return nil, 0, fmt.Errorf("rebasin: %d units in %d heads", n, heads)
	}
	hd := n / heads
	perm := make([]int, n)
	total := 0.0
	sub := make([]float64, hd*hd)
	for h := 0; h < heads; h++ {
		o := h * hd
		for i := 0; i < hd; i++ {
			copy(sub[i*hd:(i+1)*hd], c[(o+i)*n+o:(o+i)*n+o+hd])
		}
		p, v, err := SolveLAP(sub, hd)
		if err != nil {
			return nil, 0, err
		}
		for i, j := range p {
			perm[o+i] = o + j
		}
		total += v
	}
	return perm, total, nil
}
