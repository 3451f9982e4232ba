package search

import (
	"context"
	"math/rand"
	"reflect"
	"testing"
)

// ladder returns a layer whose cost goes down by step from base.
func ladder(name string, base, step int64, levels int) Layer {
	c := make([]int64, levels)
	for i := range c {
		c[i] = base - int64(i)*step
	}
	return Layer{Name: name, Cost: c}
}

// sensitivity is a separable fitness: layer i costs w_i·level², so the
// best allocation puts high levels on insensitive layers.
func sensitivity(w []float64) EvaluatorFunc {
	return func(_ context.Context, levels []int, samples []int) (float64, error) {
		f := 0.0
		for i, l := range levels {
			f += w[i] * float64(l*l)
		}
		return f + 1e-6*float64(len(samples)), nil
	}
}

func TestSearchKeepsBudgetAndImproves(t *testing.T) {
	w := []float64{10, 1, 0.1, 5, 0.5, 2}
	var layers []Layer
	for i := range w {
		layers = append(layers, ladder(string(rune('a'+i)), 1000, 10, 9))
	}
	start := []int{4, 4, 4, 4, 4, 4}
	eval := sensitivity(w)
	uniform, _ := eval(context.Background(), start, nil)
	var budgets []int64
	res, err := Search(context.Background(), layers, start, eval, Options{
		Generations: 60, Offspring: 8, Survivors: []int{3, 1}, Samples: []int{4, 8}, TotalSamples: 16,
		Rand: rand.New(rand.NewSource(1)),
		Progress: func(gen int, parent []int, f float64) {
			budgets = append(budgets, Budget(layers, parent))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range budgets {
		if b != Budget(layers, start) {
			t.Fatalf("budget drifted: %d vs %d", b, Budget(layers, start))
		}
	}
	if res.Fitness >= uniform {
		t.Fatalf("search did not improve: %v vs uniform %v", res.Fitness, uniform)
	}
	// the most sensitive layer must end below the least sensitive one
	if res.Levels[0] >= res.Levels[2] {
		t.Errorf("allocation ignores sensitivity: %v", res.Levels)
	}
	for i := 1; i < len(res.History); i++ {
		if res.History[i] > res.History[i-1]+1e-9 {
			t.Errorf("elitist search got worse at generation %d: %v > %v", i, res.History[i], res.History[i-1])
		}
	}
}

func TestSearchDeterministic(t *testing.T) {
	w := []float64{3, 1, 2, 0.5}
	var layers []Layer
	for range w {
		layers = append(layers, ladder("l", 100, 5, 7))
	}
	run := func(seed int64) []int {
		res, err := Search(context.Background(), layers, []int{3, 3, 3, 3}, sensitivity(w), Options{
			Generations: 20, TotalSamples: 10, Samples: []int{2, 5}, Rand: rand.New(rand.NewSource(seed)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return res.Levels
	}
	if a, b := run(7), run(7); !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different results: %v %v", a, b)
	}
}

func TestMutatePreservesLevelSum(t *testing.T) {
	layers := []Layer{ladder("a", 10, 1, 3), ladder("b", 10, 1, 3), ladder("c", 10, 1, 3)}
	r := rand.New(rand.NewSource(3))
	parent := []int{1, 1, 1}
	for i := 0; i < 1000; i++ {
		c, ok := Mutate(r, layers, parent, 3)
		if !ok {
			t.Fatal("no mutation possible")
		}
		s := 0
		for k, l := range c {
			if l < 0 || l > 2 {
				t.Fatalf("level out of range: %v", c)
			}
			s += l - parent[k]
		}
		if s != 0 {
			t.Fatalf("level sum changed: %v", c)
		}
		parent = c
	}
}

func TestCheckLadders(t *testing.T) {
	tests := []struct {
		name   string
		layers []Layer
		ok     bool
	}{
		{"equal steps", []Layer{ladder("a", 10, 2, 4), ladder("b", 50, 2, 3)}, true},
		{"unequal steps", []Layer{ladder("a", 10, 2, 4), ladder("b", 50, 3, 3)}, false},
		{"unequal steps in different groups", []Layer{ladder("a", 10, 2, 4), grouped(ladder("b", 50, 3, 3), 1)}, true},
		{"unequal steps inside a group", []Layer{ladder("a", 10, 2, 4), grouped(ladder("b", 50, 3, 3), 1), grouped(ladder("c", 50, 2, 3), 1)}, false},
		{"empty layer", []Layer{{Name: "x"}}, false},
		{"no layers", nil, false},
	}
	for _, tc := range tests {
		_, err := CheckLadders(tc.layers)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

func TestSearchRejectsBadOptions(t *testing.T) {
	layers := []Layer{ladder("a", 10, 1, 3), ladder("b", 10, 1, 3)}
	ev := sensitivity([]float64{1, 1})
	bad := []Options{
		{TotalSamples: 0},
		{TotalSamples: 4, Survivors: []int{2, 2}, Samples: []int{1, 2}},
		{TotalSamples: 4, Survivors: []int{2, 1}, Samples: []int{1}},
	}
	for i, o := range bad {
		if _, err := Search(context.Background(), layers, []int{1, 1}, ev, o); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	if _, err := Search(context.Background(), layers, []int{5, 1}, ev, Options{TotalSamples: 4}); err == nil {
		t.Error("start level out of range accepted")
	}
}

func grouped(l Layer, g int) Layer { l.Group = g; return l }

// TestGroupedMutationKeepsBudget mixes layers with different step sizes (as
// rank ladders of layers of different shapes): switches must stay inside a
// group, so the exact budget holds although steps differ across groups.
func TestGroupedMutationKeepsBudget(t *testing.T) {
	sizes := []int64{7, 11, 7, 11, 13, 7}
	layers := make([]Layer, len(sizes))
	for i, g := range GroupBySize(sizes) {
		layers[i] = grouped(ladder(string(rune('a'+i)), 200, sizes[i], 6), g)
	}
	if _, err := CheckLadders(layers); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(5))
	parent := []int{2, 2, 2, 2, 2, 2}
	budget := Budget(layers, parent)
	for i := 0; i < 2000; i++ {
		c, ok := Mutate(r, layers, parent, 3)
		if !ok {
			t.Fatal("no mutation possible")
		}
		if b := Budget(layers, c); b != budget {
			t.Fatalf("budget %d, want %d: %v", b, budget, c)
		}
		if c[4] != 2 {
			t.Fatalf("the only layer of its group moved: %v", c)
		}
		parent = c
	}
	// a search over the same layers keeps the budget and improves
	w := []float64{5, 1, 0.2, 3, 1, 0.1}
	eval := sensitivity(w)
	start := []int{2, 2, 2, 2, 2, 2}
	uniform, _ := eval(context.Background(), start, nil)
	res, err := Search(context.Background(), layers, start, eval, Options{
		Generations: 40, Offspring: 8, Survivors: []int{2, 1}, Samples: []int{4, 8}, TotalSamples: 8,
		Rand: rand.New(rand.NewSource(2)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if Budget(layers, res.Levels) != Budget(layers, start) || res.Fitness >= uniform {
		t.Fatalf("levels %v fitness %v (uniform %v)", res.Levels, res.Fitness, uniform)
	}
}

func TestGroupBySize(t *testing.T) {
	got := GroupBySize([]int64{5, 3, 5, 9, 3})
	want := []int{0, 1, 0, 2, 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
