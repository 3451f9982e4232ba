package merge

import (
	"context"
	"fmt"
	"sort"

	"github.com/onnxpost/onnxpost/onnxio"
)

// SoupStep records one candidate tried by GreedySoup.
type SoupStep struct {
	// Model is the index of the model offered to the soup.
	Model int `json:"model"`
	// Score is the candidate soup's score (for the first step, the best
	// model's own score).
	Score float64 `json:"score"`
	// Added reports whether the model joined the soup.
	Added bool `json:"added"`
}

// SoupResult is the outcome of GreedySoup.
type SoupResult struct {
	// Ingredients are the indices of the models in the soup, in the order
	// they were added.
	Ingredients []int `json:"ingredients"`
	// Score is the final soup's score.
	Score float64 `json:"score"`
	// Individual holds each model's own score, by model index.
	Individual []float64 `json:"individual"`
	// Steps lists every candidate tried, in order.
	Steps []SoupStep `json:"steps"`
}

// ScoreFunc scores the uniform average of the models whose indices are given
// (higher is better).
type ScoreFunc func(ctx context.Context, ingredients []int) (float64, error)

// GreedySoup runs the greedy soup of Wortsman et al. over n models: score
// each model alone, sort by score (descending; equal scores keep index
// order), start from the best, and add each next model when the uniform
// average of the soup plus that model — (k·soup + θ)/(k+1) — scores strictly
// higher than the soup so far. It makes 2n − 1 calls to score.
func GreedySoup(ctx context.Context, n int, score ScoreFunc) (*SoupResult, error) {
	if n < 1 {
		return nil, fmt.Errorf("merge: greedy soup of %d models", n)
	}
	res := &SoupResult{Individual: make([]float64, n)}
	for i := range n {
		s, err := score(ctx, []int{i})
		if err != nil {
			return nil, fmt.Errorf("merge: scoring model %d: %w", i, err)
		}
		res.Individual[i] = s
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return res.Individual[order[a]] > res.Individual[order[b]] })
	res.Ingredients = []int{order[0]}
	res.Score = res.Individual[order[0]]
	res.Steps = append(res.Steps, SoupStep{Model: order[0], Score: res.Score, Added: true})
	for _, m := range order[1:] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cand := append(append([]int{}, res.Ingredients...), m)
		s, err := score(ctx, cand)
		if err != nil {
			return nil, fmt.Errorf("merge: scoring soup %v: %w", cand, err)
		}
		added := s > res.Score
		res.Steps = append(res.Steps, SoupStep{Model: m, Score: s, Added: added})
		if added {
			res.Ingredients, res.Score = cand, s
		}
	}
	return res, nil
}

// Scorer scores a candidate model, higher is better — e.g. accuracy on a
// held-out set, as the CLI wires it to evalharness.
type Scorer interface {
	Score(ctx context.Context, candidate *onnxio.Model) (float64, error)
}

// ScorerFunc adapts a function to Scorer.
type ScorerFunc func(ctx context.Context, candidate *onnxio.Model) (float64, error)

// Score calls f.
func (f ScorerFunc) Score(ctx context.Context, candidate *onnxio.Model) (float64, error) {
	return f(ctx, candidate)
}

// Soup returns the uniform average of the models whose indices are given,
// as a new in-memory model (a single index gives a copy of that model).
func Soup(ctx context.Context, models []*onnxio.Model, ingredients []int, opt Options) (*onnxio.Model, error) {
	if len(ingredients) == 0 {
		return nil, fmt.Errorf("%w: a soup of no models", ErrOptions)
	}
	if len(ingredients) == 1 {
		return models[ingredients[0]].Derive(), nil
	}
	sub := make([]*onnxio.Model, len(ingredients))
	for i, k := range ingredients {
		sub[i] = models[k]
	}
	o := opt
	o.Method, o.Weights, o.Densities, o.NoNormalize = Linear, nil, nil, false
	mg, err := New(ctx, Inputs{Models: sub}, o, nil)
	if err != nil {
		return nil, err
	}
	return mg.Model(ctx, nil)
}

// GreedySoupModels runs GreedySoup over models, building each candidate
// soup as the uniform average of its ingredients (opt's Include/Exclude
// apply) and scoring it with s. It returns the final soup and the record of
// the search.
func GreedySoupModels(ctx context.Context, models []*onnxio.Model, s Scorer, opt Options) (*onnxio.Model, *SoupResult, error) {
	res, err := GreedySoup(ctx, len(models), func(ctx context.Context, ing []int) (float64, error) {
		cand, err := Soup(ctx, models, ing, opt)
		if err != nil {
			return 0, err
		}
		return s.Score(ctx, cand)
	})
	if err != nil {
		return nil, nil, err
	}
	soup, err := Soup(ctx, models, res.Ingredients, opt)
	if err != nil {
		return nil, nil, err
	}
	return soup, res, nil
}
