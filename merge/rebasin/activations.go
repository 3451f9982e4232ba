package rebasin

import (
	"context"
	"fmt"
	"math"

	"github.com/onnxpost/onnxpost/evalharness"
	"github.com/onnxpost/onnxpost/onnxio"
)

// ActivationOptions sets activation matching.
type ActivationOptions struct {
	Session evalharness.SessionOptions
	Batch   int64 // samples per run; 0: 64
}

// unitStats accumulates, for one group, the sums needed for the Pearson
// correlation between every unit of A and every unit of B over samples
// (a sample is one position: one row, or one pixel of a feature map).
type unitStats struct {
	n              int
	count          float64
	sa, sb, qa, qb []float64
	cross          []float64 // n×n: Σ a_i b_j
}

func newUnitStats(n int) *unitStats {
	return &unitStats{n: n, sa: make([]float64, n), sb: make([]float64, n), qa: make([]float64, n), qb: make([]float64, n), cross: make([]float64, n*n)}
}

// rows turns a probe output into samples × units (unit axis 1 for channel
// layouts, else the last axis).
func rows(a *evalharness.Array, axis, n int) ([]float64, int, error) {
	v, err := a.Float64()
	if err != nil {
		return nil, 0, err
	}
	if axis < 0 {
		axis = len(a.Shape) - 1
	}
	if axis >= len(a.Shape) || a.Shape[axis] != int64(n) {
		return nil, 0, fmt.Errorf("rebasin: activation of shape %v has no axis of %d units", a.Shape, n)
	}
	outer, _, inner := split(a.Shape, axis)
	out := make([]float64, len(v))
	s := 0
	for o := 0; o < outer; o++ {
		for k := 0; k < inner; k++ {
			for u := 0; u < n; u++ {
				out[s*n+u] = v[(o*n+u)*inner+k]
			}
			s++
		}
	}
	return out, s, nil
}

func (st *unitStats) add(a, b []float64, samples int) {
	n := st.n
	for s := 0; s < samples; s++ {
		ra, rb := a[s*n:(s+1)*n], b[s*n:(s+1)*n]
		for i, x := range ra {
			st.sa[i] += x
			st.qa[i] += x * x
			st.sb[i] += rb[i]
			st.qb[i] += rb[i] * rb[i]
			row := st.cross[i*n : (i+1)*n]
			for j, y := range rb {
				row[j] += x * y
			}
		}
	}
	st.count += float64(samples)
}

// corr returns the n×n correlation matrix (0 where a unit is constant).
func (st *unitStats) corr() []float64 {
	n, c := st.n, st.count
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		ma := st.sa[i] / c
		va := st.qa[i]/c - ma*ma
		for j := 0; j < n; j++ {
			mb := st.sb[j] / c
			vb := st.qb[j]/c - mb*mb
			if va <= 0 || vb <= 0 {
				continue
			}
			out[i*n+j] = (st.cross[i*n+j]/c - ma*mb) / math.Sqrt(va*vb)
		}
	}
	return out
}

// probeSession opens a session on m returning the groups' probe values.
func probeSession(m *onnxio.Model, groups []Group, so evalharness.SessionOptions) (evalharness.SessionRunner, error) {
	c := m.Clone()
	var names []string
	for _, g := range groups {
		for _, p := range append([]string{g.Probe}, g.Stream...) {
			c.AddOutput(onnxio.ValueInfo{Name: p})
			names = append(names, p)
		}
	}
	raw, err := c.Bytes()
	if err != nil {
		return nil, err
	}
	return evalharness.OpenSession(evalharness.OpenRequest{Model: raw, Outputs: names}, so)
}

// ActivationMatching finds the permutations of b's hidden units that best
// match a's activations on the calibration data ds (Git Re-Basin
// activation matching): per group, one linear assignment on the Pearson
// correlation between a's and b's post-activation units over every sample
// (and every pixel of a feature map). Neither model is modified.
func ActivationMatching(ctx context.Context, a, b *onnxio.Model, ds *evalharness.Dataset, opt ActivationOptions) (*Result, error) {
	groups, err := sameGroups(a, b)
	if err != nil {
		return nil, err
	}
	res := &Result{Groups: groups, Perms: make([][]int, len(groups)), Passes: 1}
	if len(groups) == 0 {
		return res, nil
	}
	sa, err := probeSession(a, groups, opt.Session)
	if err != nil {
		return nil, err
	}
	defer sa.Close()
	sb, err := probeSession(b, groups, opt.Session)
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	if err := ds.Check(sa.Inputs()); err != nil {
		return nil, err
	}
	if ds.N == 0 {
		return nil, fmt.Errorf("rebasin: the calibration data has no samples")
	}
	batch := opt.Batch
	if batch <= 0 {
		batch = 64
	}
	// one set of statistics per probe: a group's Probe, then its Stream
	stats := make([][]*unitStats, len(groups))
	for g := range groups {
		for range 1 + len(groups[g].Stream) {
			stats[g] = append(stats[g], newUnitStats(groups[g].Size))
		}
	}
	for lo := int64(0); lo < ds.N; lo += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+batch, ds.N)
		in := ds.Batch(lo, hi)
		oa, err := sa.Run(in)
		if err != nil {
			return nil, err
		}
		ob, err := sb.Run(in)
		if err != nil {
			return nil, err
		}
		out := 0
		for g, grp := range groups {
			for _, st := range stats[g] {
				ra, n, err := rows(oa[out], grp.ProbeAxis, grp.Size)
				if err != nil {
					return nil, fmt.Errorf("group %q: %w", grp.Name, err)
				}
				rb, _, err := rows(ob[out], grp.ProbeAxis, grp.Size)
				if err != nil {
					return nil, fmt.Errorf("group %q: %w", grp.Name, err)
				}
				st.add(ra, rb, n)
				out++
			}
		}
	}
	partner := partners(groups)
	for g, grp := range groups {
		if res.Perms[g] != nil {
			continue
		}
		ids := []int{g}
		if k, ok := partner[g]; ok {
			ids = append(ids, k)
		}
		var cs [][]float64
		for _, id := range ids {
			// the sum of the correlations at each probe of the group
			c := stats[id][0].corr()
			for _, st := range stats[id][1:] {
				for i, v := range st.corr() {
					c[i] += v
				}
			}
			cs = append(cs, c)
		}
		ps, _, err := solveJoint(cs, grp.Size, grp.Heads)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", grp.Name, err)
		}
		for k, id := range ids {
			res.Perms[id] = ps[k]
		}
	}
	return res, nil
}
