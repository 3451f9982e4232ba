package search_test

import (
	"context"
	"fmt"
	"math/rand"

	"github.com/onnxpost/onnxpost/compress/search"
)

// Three layers with sparsity ladders (cost = nonzeros, 10 fewer per level)
// and a fourth layer of another size whose ladder steps by 25: it is in
// its own group, so it keeps its level and the budget stays exact. The
// fitness stands in for the KL a model evaluation would give: layer 0 is
// the most sensitive.
func Example() {
	ladder := func(name string, top, step int64, group int) search.Layer {
		c := make([]int64, 5)
		for i := range c {
			c[i] = top - int64(i)*step
		}
		return search.Layer{Name: name, Cost: c, Group: group}
	}
	layers := []search.Layer{ladder("q", 100, 10, 0), ladder("k", 100, 10, 0), ladder("v", 100, 10, 0), ladder("ff", 400, 25, 1)}
	sens := []float64{8, 1, 2, 1}
	eval := search.EvaluatorFunc(func(_ context.Context, lv []int, _ []int) (float64, error) {
		f := 0.0
		for i, l := range lv {
			f += sens[i] * float64(l*l)
		}
		return f, nil
	})
	start := []int{2, 2, 2, 2}
	res, err := search.Search(context.Background(), layers, start, eval, search.Options{
		Generations: 30, Offspring: 8, Survivors: []int{2, 1}, Samples: []int{4, 8}, TotalSamples: 8,
		Rand: rand.New(rand.NewSource(1)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("levels:", res.Levels)
	fmt.Println("budget kept:", search.Budget(layers, res.Levels) == search.Budget(layers, start))
	// Output:
	// levels: [0 4 2 2]
	// budget kept: true
}
