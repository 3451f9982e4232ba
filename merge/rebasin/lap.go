package rebasin

import (
	"fmt"
	"math"
)

// SolveLAP solves the linear assignment problem on the n×n matrix c (row
// major, len n·n): it returns the permutation perm maximizing
// Σ_i c[i·n + perm[i]] and that sum. The algorithm is the shortest
// augmenting path method with dual potentials (Hungarian method in the
// Jonker–Volgenant form), O(n³), exact for finite inputs. Among optimal
// assignments the one returned is deterministic (the first found scanning
// columns in increasing order). Non-finite entries are an error.
func SolveLAP(c []float64, n int) ([]int, float64, error) {
	if n < 0 || len(c) != n*n {
		return nil, 0, fmt.Errorf("rebasin: LAP: %d values for a %d×%d matrix", len(c), n, n)
	}
	for i, v := range c {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, 0, fmt.Errorf("rebasin: LAP: entry (%d, %d) is %v", i/n, i%n, v)
		}
	}
	if n == 0 {
		return []int{}, 0, nil
	}
	// Minimize cost = −c. Rows and columns are 1-based below; index 0 is
	// the virtual column the augmenting path starts from.
	u := make([]float64, n+1)    // row potentials
	v := make([]float64, n+1)    // column potentials
	p := make([]int, n+1)        // p[j]: row assigned to column j (0: none)
	way := make([]int, n+1)      // way[j]: previous column on the path
	minv := make([]float64, n+1) // reduced-cost frontier per column
	used := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		for j := range minv {
			minv[j] = math.Inf(1)
			used[j] = false
		}
		for {
			used[j0] = true
			i0 := p[j0]
			delta := math.Inf(1)
			j1 := -1
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				cur := -c[(i0-1)*n+j-1] - u[i0] - v[j]
				if cur < minv[j] {
					minv[j] = cur
					way[j] = j0
				}
				if minv[j] < delta {
					delta = minv[j]
					j1 = j
				}
			}
			if j1 < 0 {
				return nil, 0, fmt.Errorf("rebasin: LAP: internal error: no augmenting column")
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if p[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	perm := make([]int, n)
	for j := 1; j <= n; j++ {
		perm[p[j]-1] = j - 1
	}
	sum := 0.0
	for i, j := range perm {
		sum += c[i*n+j]
	}
	return perm, sum, nil
}
