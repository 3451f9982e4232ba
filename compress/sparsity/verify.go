package sparsity

import "fmt"

// NMCheck is the result of VerifyNM.
type NMCheck struct {
	// Pattern is the checked pattern, "N:M".
	Pattern string `json:"pattern"`
	// Groups is the number of groups checked.
	Groups int `json:"groups"`
	// Violations is the number of groups with more than N non-zeros.
	Violations int `json:"violations"`
	// First describes the first violating group, if any.
	First string `json:"first_violation,omitempty"`
}

// OK reports whether every group obeys the pattern.
func (c NMCheck) OK() bool { return c.Violations == 0 }

// VerifyNM checks that every group of M consecutive weights along the
// reduction axis of each output unit of a tensor holds at most N non-zeros:
// for LayoutKN ([K,N]) the groups run down each column along K, for
// LayoutNK ([N,K]) along each row, for LayoutConv ([O,C,kh,...]) along the
// input channels for each output channel and kernel position. It reads the
// tensor in its own layout, independently of the pruning code.
func VerifyNM(data []float32, l Layout, dims []int64, p Pattern) (NMCheck, error) {
	res := NMCheck{Pattern: p.String()}
	if err := p.Validate(); err != nil {
		return res, err
	}
	size := int64(1)
	for _, d := range dims {
		if d <= 0 {
			return res, fmt.Errorf("sparsity: verify: bad dims %v", dims)
		}
		size *= d
	}
	if int64(len(data)) != size {
		return res, fmt.Errorf("sparsity: verify: %d values for dims %v", len(data), dims)
	}
	// Every layout is reduced to: outer units, a reduction axis of length
	// red whose element t sits at base(unit) + t*step.
	var outer, red, step int
	var base func(u int) int
	switch l {
	case LayoutKN:
		if len(dims) != 2 {
			return res, fmt.Errorf("sparsity: verify: KN needs 2 dims, got %v", dims)
		}
		k, n := int(dims[0]), int(dims[1])
		outer, red, step = n, k, n
		base = func(u int) int { return u } // column u, element (t, u)
	case LayoutNK:
		if len(dims) != 2 {
			return res, fmt.Errorf("sparsity: verify: NK needs 2 dims, got %v", dims)
		}
		n, k := int(dims[0]), int(dims[1])
		outer, red, step = n, k, 1
		base = func(u int) int { return u * k } // row u, element (u, t)
	case LayoutConv:
		if len(dims) < 3 {
			return res, fmt.Errorf("sparsity: verify: conv needs >= 3 dims, got %v", dims)
		}
		o, c := int(dims[0]), int(dims[1])
		sp := 1
		for _, d := range dims[2:] {
			sp *= int(d)
		}
		outer, red, step = o*sp, c, sp
		// unit u = (oc, pos): element (oc, t, pos) at (oc*c + t)*sp + pos
		base = func(u int) int { oc, pos := u/sp, u%sp; return oc*c*sp + pos }
	default:
		return res, fmt.Errorf("sparsity: verify: unknown layout %q", l)
	}
	if red%p.M != 0 {
		return res, fmt.Errorf("sparsity: verify: reduction size %d is not a multiple of %d", red, p.M)
	}
	for u := 0; u < outer; u++ {
		b := base(u)
		for g := 0; g < red/p.M; g++ {
			nz := 0
			for t := g * p.M; t < (g+1)*p.M; t++ {
				if data[b+t*step] != 0 {
					nz++
				}
			}
			res.Groups++
			if nz > p.N {
				if res.Violations == 0 {
					res.First = fmt.Sprintf("output unit %d, reduction %d..%d: %d non-zeros", u, g*p.M, (g+1)*p.M-1, nz)
				}
				res.Violations++
			}
		}
	}
	return res, nil
}

// CountZeros returns the number of exact zeros in data.
func CountZeros(data []float32) int {
	n := 0
	for _, v := range data {
		if v == 0 {
			n++
		}
	}
	return n
}
