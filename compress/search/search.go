// Package search implements EvoPress-style evolutionary search for
// per-layer compression levels under an exact global budget
// (Sieberling et al., "EvoPress", ICML 2025; docs/ARCHITECTURE.md §5.6).
//
// Each layer has a ladder of levels whose adjacent steps change the budget
// by the same amount in every layer (equal nonzeros for sparsity, equal
// parameters for rank, ...). A level-switch mutation lowers one layer by a
// step and raises another by a step, so every candidate has exactly the
// budget of the start. Selection is (1+λ) with multi-step stages: all
// offspring are scored on a small random calibration subset, the best few
// survive to a larger subset, and the parent rejoins only at the last
// stage, whose single survivor becomes the next parent. Fitness is the mean
// KL(dense ‖ candidate) for classifiers (or a fidelity loss such as 1 −
// cosine for embeddings), lower is better, computed by an Evaluator that
// the caller supplies (evalharness through pipeline); this package knows
// no runtime.
//
// Layers whose steps differ (rank ladders of layers of different shapes,
// bit ladders of layers of different sizes) are put in groups with equal
// steps (Layer.Group, GroupBySize: EvoPress's group_rule "size"); a level
// switch then lowers one layer and raises another of the same group, so
// the budget stays exact.
package search

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
)

// Layer is one searchable layer: Cost[l] is the budget the layer consumes
// at level l (e.g. its nonzero weights). Adjacent levels must differ by the
// same step in every layer of a group for the budget to be preserved
// exactly by level switches.
//
// Group implements EvoPress's group_rule: a level switch lowers one layer
// and raises another of the same group, so layers whose steps differ (a
// rank step costs m+n parameters, a bit step numel bits) can share one
// search as long as the steps are equal inside each group. All layers are
// in group 0 unless told otherwise (one group: every pair may switch).
type Layer struct {
	Name  string
	Cost  []int64
	Group int
}

// Levels returns the number of levels of the layer.
func (l Layer) Levels() int { return len(l.Cost) }

// Evaluator scores a configuration (one level per layer) on the given
// calibration samples, e.g. the mean KL(dense ‖ candidate). Lower is
// better.
type Evaluator interface {
	Fitness(ctx context.Context, levels []int, samples []int) (float64, error)
}

// EvaluatorFunc adapts a function to Evaluator.
type EvaluatorFunc func(ctx context.Context, levels []int, samples []int) (float64, error)

// Fitness calls f.
func (f EvaluatorFunc) Fitness(ctx context.Context, levels []int, samples []int) (float64, error) {
	return f(ctx, levels, samples)
}

// Options configures Search. Zero values take the defaults noted.
type Options struct {
	// Generations of the (1+λ) loop (default 50).
	Generations int
	// Offspring λ per generation (default 16).
	Offspring int
	// Survivors per selection stage; the last must be 1 (default 4,1).
	Survivors []int
	// Samples per stage, drawn afresh each generation from
	// [0, TotalSamples) (default 32,128, clipped to TotalSamples).
	Samples []int
	// TotalSamples is the calibration set size (required).
	TotalSamples int
	// MaxFlips bounds level switches per mutation: min(U{1..MaxFlips},
	// U{1..MaxFlips}) flips, as EvoPress (default 3).
	MaxFlips int
	// Rand is the source of randomness (required for reproducibility; a
	// nil Rand uses seed 0).
	Rand *rand.Rand
	// Progress, if set, is called after every generation.
	Progress func(gen int, parent []int, fitness float64)
}

// Result is the outcome of Search.
type Result struct {
	Levels  []int
	Fitness float64 // the parent's fitness on the last stage of the last generation
	// History holds the parent's fitness after every generation.
	History []float64
	// Evaluations counts Evaluator calls.
	Evaluations int
}

// ErrBudget reports a candidate whose budget differs from the start's.
var ErrBudget = errors.New("search: budget not preserved")

// Budget returns the total cost of a configuration.
func Budget(layers []Layer, levels []int) int64 {
	var b int64
	for i, l := range layers {
		b += l.Cost[levels[i]]
	}
	return b
}

// CheckLadders verifies that every layer has at least one level and that
// all adjacent steps of the layers of one group are equal, returning the
// step of each group (absent for a group whose layers all have one level).
func CheckLadders(layers []Layer) (map[int]int64, error) {
	if len(layers) == 0 {
		return nil, errors.New("search: no layers")
	}
	steps := map[int]int64{}
	for _, l := range layers {
		if len(l.Cost) == 0 {
			return nil, fmt.Errorf("search: layer %q has no levels", l.Name)
		}
		for k := 1; k < len(l.Cost); k++ {
			d := l.Cost[k] - l.Cost[k-1]
			step, have := steps[l.Group]
			if !have {
				steps[l.Group] = d
			} else if d != step {
				return nil, fmt.Errorf("search: layer %q (group %d): step %d between levels %d and %d differs from %d; the budget could not be kept exact", l.Name, l.Group, d, k-1, k, step)
			}
		}
	}
	return steps, nil
}

// GroupBySize assigns group ids to layers by a size key (EvoPress's
// group_rule "size"): layers with equal keys share a group, ids numbered
// in order of first appearance.
func GroupBySize(keys []int64) []int {
	ids := map[int64]int{}
	out := make([]int, len(keys))
	for i, k := range keys {
		id, ok := ids[k]
		if !ok {
			id = len(ids)
			ids[k] = id
		}
		out[i] = id
	}
	return out
}

func (o *Options) defaults() error {
	if o.Generations <= 0 {
		o.Generations = 50
	}
	if o.Offspring <= 0 {
		o.Offspring = 16
	}
	if len(o.Survivors) == 0 {
		o.Survivors = []int{4, 1}
	}
	if len(o.Samples) == 0 {
		o.Samples = []int{32, 128}
	}
	if len(o.Samples) != len(o.Survivors) {
		return fmt.Errorf("search: %d sample sizes for %d selection stages", len(o.Samples), len(o.Survivors))
	}
	if o.Survivors[len(o.Survivors)-1] != 1 {
		return errors.New("search: the last selection stage must keep 1 survivor")
	}
	for i, s := range o.Survivors {
		if s < 1 {
			return fmt.Errorf("search: stage %d keeps %d survivors", i, s)
		}
	}
	if o.TotalSamples <= 0 {
		return errors.New("search: no calibration samples")
	}
	for i := range o.Samples {
		if o.Samples[i] <= 0 {
			return fmt.Errorf("search: stage %d uses %d samples", i, o.Samples[i])
		}
		if o.Samples[i] > o.TotalSamples {
			o.Samples[i] = o.TotalSamples
		}
	}
	if o.MaxFlips <= 0 {
		o.MaxFlips = 3
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewSource(0))
	}
	return nil
}

// Mutate returns a copy of parent with a level-switch mutation applied:
// min(U{1..maxFlips}, U{1..maxFlips}) times, one layer goes down a level and
// a different layer of the same group goes up one. ok is false when no
// switch is possible.
func Mutate(r *rand.Rand, layers []Layer, parent []int, maxFlips int) (child []int, ok bool) {
	child = append([]int(nil), parent...)
	flips := min(1+r.Intn(maxFlips), 1+r.Intn(maxFlips))
	done := 0
	for f := 0; f < flips; f++ {
		// layers that can go down and have a partner in their group that
		// can go up
		upIn := map[int]int{} // group → number of layers that can go up
		for i, l := range layers {
			if child[i] < l.Levels()-1 {
				upIn[l.Group]++
			}
		}
		var down []int
		for i, l := range layers {
			if child[i] == 0 {
				continue
			}
			n := upIn[l.Group]
			if child[i] < l.Levels()-1 {
				n-- // itself
			}
			if n > 0 {
				down = append(down, i)
			}
		}
		if len(down) == 0 {
			break
		}
		d := down[r.Intn(len(down))]
		var up []int
		for i, l := range layers {
			if i != d && l.Group == layers[d].Group && child[i] < l.Levels()-1 {
				up = append(up, i)
			}
		}
		u := up[r.Intn(len(up))]
		child[d]--
		child[u]++
		done++
	}
	return child, done > 0
}

// Search runs the (1+λ) evolutionary search from start. Every candidate's
// budget is checked against start's; a difference is an error (it would
// be a bug in the ladders or the mutation).
func Search(ctx context.Context, layers []Layer, start []int, eval Evaluator, opt Options) (*Result, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	if len(start) != len(layers) {
		return nil, fmt.Errorf("search: %d start levels for %d layers", len(start), len(layers))
	}
	for i, l := range start {
		if l < 0 || l >= layers[i].Levels() {
			return nil, fmt.Errorf("search: start level %d of layer %q outside [0,%d)", l, layers[i].Name, layers[i].Levels())
		}
	}
	if _, err := CheckLadders(layers); err != nil {
		return nil, err
	}
	budget := Budget(layers, start)
	r := opt.Rand
	res := &Result{Levels: append([]int(nil), start...)}
	parent := append([]int(nil), start...)
	parentFit := 0.0
	type cand struct {
		levels []int
		fit    float64
	}
	key := func(l []int) string { return fmt.Sprint(l) }
	for gen := 0; gen < opt.Generations; gen++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seen := map[string]bool{key(parent): true}
		var pop []cand
		for tries := 0; len(pop) < opt.Offspring && tries < 20*opt.Offspring; tries++ {
			c, ok := Mutate(r, layers, parent, opt.MaxFlips)
			if !ok {
				break
			}
			if seen[key(c)] {
				continue
			}
			seen[key(c)] = true
			if b := Budget(layers, c); b != budget {
				return nil, fmt.Errorf("%w: candidate %v has budget %d, start %d", ErrBudget, c, b, budget)
			}
			pop = append(pop, cand{levels: c})
		}
		if len(pop) == 0 {
			break // nothing to explore: a single level everywhere
		}
		for stage, keep := range opt.Survivors {
			samples := r.Perm(opt.TotalSamples)[:opt.Samples[stage]]
			sort.Ints(samples)
			if stage == len(opt.Survivors)-1 {
				pop = append(pop, cand{levels: parent})
			}
			for i := range pop {
				f, err := eval.Fitness(ctx, pop[i].levels, samples)
				if err != nil {
					return nil, err
				}
				res.Evaluations++
				pop[i].fit = f
			}
			sort.SliceStable(pop, func(i, j int) bool { return pop[i].fit < pop[j].fit })
			if keep < len(pop) {
				pop = pop[:keep]
			}
		}
		parent, parentFit = pop[0].levels, pop[0].fit
		res.History = append(res.History, parentFit)
		if opt.Progress != nil {
			opt.Progress(gen, parent, parentFit)
		}
	}
	res.Levels, res.Fitness = parent, parentFit
	return res, nil
}
