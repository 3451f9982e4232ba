package lowrank

import (
	"container/heap"
	"fmt"
	"math"
)

// RuleKind is how a per-layer rank is chosen.
type RuleKind int

const (
	// ByEnergy keeps the smallest r with Σ_{i≤r} σᵢ² ≥ E·Σ σᵢ², E in (0,1].
	ByEnergy RuleKind = iota + 1
	// ByRankRatio keeps r = max(1, ⌊R·min(m,n)⌋), R in (0,1].
	ByRankRatio
	// ByRank keeps r = min(K, min(m,n)), K ≥ 1.
	ByRank
	// ByParamsRatio spends a whole-model parameter budget: the factorized
	// layers keep at most a fraction P in (0,1] of their parameters, ranks
	// chosen jointly by Budget.
	ByParamsRatio
)

// Rule selects ranks: one of the four kinds and its value.
type Rule struct {
	Kind  RuleKind
	Value float64
}

// String renders the rule as its parameter and value ("energy 0.9").
func (r Rule) String() string {
	switch r.Kind {
	case ByEnergy:
		return fmt.Sprintf("energy %g", r.Value)
	case ByRankRatio:
		return fmt.Sprintf("rank-ratio %g", r.Value)
	case ByRank:
		return fmt.Sprintf("rank %d", int(r.Value))
	case ByParamsRatio:
		return fmt.Sprintf("params-ratio %g", r.Value)
	}
	return "no rank rule"
}

// Validate checks the rule's value range.
func (r Rule) Validate() error {
	v := r.Value
	switch r.Kind {
	case ByEnergy:
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("%w: energy %g outside (0,1]", ErrOption, v)
		}
	case ByRankRatio:
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("%w: rank ratio %g outside (0,1]", ErrOption, v)
		}
	case ByRank:
		if !(v >= 1) || v != math.Trunc(v) || v > math.MaxInt32 {
			return fmt.Errorf("%w: rank %g is not an integer ≥ 1", ErrOption, v)
		}
	case ByParamsRatio:
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("%w: params ratio %g outside (0,1]", ErrOption, v)
		}
	default:
		return fmt.Errorf("%w: no rank rule (one of energy, rank ratio, rank, params ratio)", ErrOption)
	}
	return nil
}

// Prior returns the rank the rule gives an m×n matrix before any SVD, or 0
// when the rank depends on the spectrum (energy, params ratio).
func (r Rule) Prior(m, n int) int {
	k := min(m, n)
	switch r.Kind {
	case ByRankRatio:
		return max(1, min(k, int(math.Floor(r.Value*float64(k)))))
	case ByRank:
		return min(k, int(r.Value))
	}
	return 0
}

// Select returns the rank the rule gives the decomposition s (ByEnergy,
// ByRankRatio, ByRank). For ByEnergy s must hold the whole spectrum (or at
// least enough of it); the result is then capped at s.K(). ByParamsRatio is
// not per layer: use Budget.
func (r Rule) Select(s *SVD) int {
	switch r.Kind {
	case ByEnergy:
		return EnergyRank(s.S, s.Total, r.Value)
	case ByRankRatio, ByRank:
		return min(r.Prior(s.M, s.N), max(1, s.K()))
	}
	panic(fmt.Errorf("%w: rule %v has no per-layer rank", ErrOption, r))
}

// EnergyRank returns the smallest r ≥ 1 with Σ_{i<r} σᵢ² ≥ e·total, σ the
// non-increasing singular values (len(sigma) when no prefix reaches it).
// A relative slack of 1e-12 absorbs the rounding of the two sums, so e = 1
// keeps every non-zero singular value and no zero one.
func EnergyRank(sigma []float64, total, e float64) int {
	if total <= 0 {
		return 1
	}
	target := e * total * (1 - 1e-12)
	var sum float64
	for i, s := range sigma {
		sum += s * s
		if sum >= target {
			return i + 1
		}
	}
	return max(1, len(sigma))
}

// Saves reports whether a rank-r factorization of an m×n matrix has fewer
// parameters than the matrix: r·(m+n) < m·n.
func Saves(m, n, r int) bool { return r*(m+n) < m*n }

// BreakEven returns the largest rank that still saves parameters for an
// m×n matrix (0 when none does, e.g. a 1×n matrix).
func BreakEven(m, n int) int { return (m*n - 1) / (m + n) }

// BudgetLayer is one layer competing for a whole-model parameter budget.
type BudgetLayer struct {
	// M, N are the factorized matrix's dimensions: rank r costs r·(M+N)
	// parameters, the dense layer M·N.
	M, N int
	// Sigma holds the layer's singular values, non-increasing (all of them).
	Sigma []float64
	// Total is Σ σᵢ² (0 means: computed from Sigma).
	Total float64
}

// Dense is the rank Budget returns for a layer that stays unfactorized.
const Dense = 0

// Budget chooses ranks for layers under one parameter budget: the factorized
// (or dense) layers together keep at most p·Σ M·N parameters.
//
// The rule is greedy on normalized energy per parameter. Every layer starts
// at rank 1 (cost M+N). Each further step of a layer — its next singular
// value at cost M+N, or, once at BreakEven, going back to the dense matrix at
// cost M·N − r·(M+N) — gains the energy it adds, as a fraction of the
// layer's own Σσ² (so layers of different scale compete fairly, and layers of
// one shape under the same budget end with roughly equal energy). The step
// with the largest gain per parameter that still fits the remaining budget
// is taken, until none fits. Ties go to the earlier layer. Returned ranks
// are in [1, BreakEven] or Dense.
func Budget(layers []BudgetLayer, p float64) ([]int, error) {
	if !(p > 0 && p <= 1) {
		return nil, fmt.Errorf("%w: params ratio %g outside (0,1]", ErrOption, p)
	}
	ranks := make([]int, len(layers))
	var before, used float64
	h := &stepHeap{}
	for i, l := range layers {
		before += float64(l.M * l.N)
		be := BreakEven(l.M, l.N)
		if be < 1 {
			ranks[i] = Dense
			used += float64(l.M * l.N)
			continue
		}
		ranks[i] = 1
		used += float64(l.M + l.N)
		if s := nextStep(l, i, 1); s != nil {
			heap.Push(h, s)
		}
	}
	budget := p * before
	if used > budget {
		return nil, fmt.Errorf("%w: rank 1 everywhere needs %.0f parameters, the budget %g×%.0f is %.0f",
			ErrBudget, used, p, before, budget)
	}
	for h.Len() > 0 {
		s := heap.Pop(h).(*step)
		if used+s.cost > budget*(1+1e-12) {
			continue // this layer's further steps cost at least as much
		}
		used += s.cost
		if s.dense {
			ranks[s.layer] = Dense
			continue
		}
		ranks[s.layer]++
		if n := nextStep(layers[s.layer], s.layer, ranks[s.layer]); n != nil {
			heap.Push(h, n)
		}
	}
	return ranks, nil
}

// nextStep returns the step that takes layer l (index i) beyond rank r.
func nextStep(l BudgetLayer, i, r int) *step {
	total := l.Total
	if total <= 0 {
		for _, s := range l.Sigma {
			total += s * s
		}
	}
	if total <= 0 {
		return nil // a zero matrix: rank 1 is exact
	}
	be := BreakEven(l.M, l.N)
	if r < be && r < len(l.Sigma) {
		g := l.Sigma[r] * l.Sigma[r] / total
		return &step{layer: i, cost: float64(l.M + l.N), ratio: g / float64(l.M+l.N)}
	}
	var kept float64
	for j := 0; j < r && j < len(l.Sigma); j++ {
		kept += l.Sigma[j] * l.Sigma[j]
	}
	tail := math.Max(0, total-kept) / total
	if tail <= 0 {
		return nil
	}
	cost := float64(l.M*l.N - r*(l.M+l.N))
	return &step{layer: i, cost: cost, ratio: tail / cost, dense: true}
}

type step struct {
	layer int
	cost  float64
	ratio float64
	dense bool
}

type stepHeap []*step

func (h stepHeap) Len() int { return len(h) }
func (h stepHeap) Less(i, j int) bool {
	if h[i].ratio != h[j].ratio {
		return h[i].ratio > h[j].ratio
	}
	return h[i].layer < h[j].layer
}
func (h stepHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *stepHeap) Push(x any)   { *h = append(*h, x.(*step)) }
func (h *stepHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
