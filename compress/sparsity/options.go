package sparsity

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Pattern is an N:M pattern: at most N non-zero weights in every group of M
// consecutive weights along the reduction axis. The zero Pattern means
// unstructured sparsity.
type Pattern struct {
	N, M int
}

// IsZero reports whether p is the zero Pattern (no N:M structure).
func (p Pattern) IsZero() bool { return p.N == 0 && p.M == 0 }

// String formats p as "N:M".
func (p Pattern) String() string { return fmt.Sprintf("%d:%d", p.N, p.M) }

// Validate checks that 0 < N < M.
func (p Pattern) Validate() error {
	if p.M <= 0 || p.N <= 0 || p.N >= p.M {
		return fmt.Errorf("sparsity: pattern %d:%d: need 0 < N < M", p.N, p.M)
	}
	return nil
}

// ParsePattern parses "N:M" (e.g. "2:4") and checks 0 < N < M.
func ParsePattern(s string) (Pattern, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Pattern{}, fmt.Errorf("sparsity: pattern %q: want N:M, e.g. 2:4", s)
	}
	n, err1 := strconv.Atoi(a)
	m, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return Pattern{}, fmt.Errorf("sparsity: pattern %q: want N:M with integers, e.g. 2:4", s)
	}
	p := Pattern{N: n, M: m}
	if err := p.Validate(); err != nil {
		return Pattern{}, err
	}
	return p, nil
}

// Method is a pruning criterion.
type Method string

// The pruning criteria.
const (
	// Magnitude scores a weight by |W|.
	Magnitude Method = "magnitude"
	// Wanda scores a weight by |W_ij|·‖X_j‖₂ (Sun et al., 2023).
	Wanda Method = "wanda"
	// SparseGPT prunes with the optimal brain surgeon update of Frantar and
	// Alistarh (2023), which also updates the kept weights.
	SparseGPT Method = "sparsegpt"
)

// ParseMethod parses a method name.
func ParseMethod(s string) (Method, error) {
	switch m := Method(strings.ToLower(strings.TrimSpace(s))); m {
	case Magnitude, Wanda, SparseGPT:
		return m, nil
	}
	return "", fmt.Errorf("sparsity: unknown method %q (want magnitude, wanda or sparsegpt)", s)
}

// NeedsCalibration reports whether m needs calibration activations.
func (m Method) NeedsCalibration() bool { return m == Wanda || m == SparseGPT }

// Scope says over which weights one unstructured threshold applies.
type Scope string

// The scopes of unstructured sparsity.
const (
	// ScopeLayer selects the pruned weights within each layer (within each
	// output row for Wanda, each column block for SparseGPT).
	ScopeLayer Scope = "layer"
	// ScopeGlobal uses one threshold over all the pruned layers together
	// (magnitude and Wanda scores only).
	ScopeGlobal Scope = "global"
)

// Defaults of SparseGPT, those of the reference code.
const (
	DefaultDamp      = 0.01
	DefaultBlockSize = 128
)

// ErrNoCalibration is returned when a method needs calibration data and
// none was given.
var ErrNoCalibration = errors.New("sparsity: method needs calibration data")

// Options configure pruning.
type Options struct {
	// Method is the criterion; the zero value means Magnitude.
	Method Method
	// Pattern is the N:M pattern; zero for unstructured sparsity.
	Pattern Pattern
	// Sparsity is the unstructured fraction of weights pruned, in [0, 1);
	// ignored with a Pattern.
	Sparsity float64
	// Scope of the unstructured threshold; the zero value means ScopeLayer.
	Scope Scope
	// Damp is SparseGPT's dampening λ as a fraction of the mean diagonal of
	// XᵀX (0 means DefaultDamp).
	Damp float64
	// BlockSize is SparseGPT's column block (0 means DefaultBlockSize); with
	// a Pattern it must be a multiple of M.
	BlockSize int
	// Workers bounds the goroutines of SparseGPT (0 means GOMAXPROCS).
	Workers int
	// Progress, when not nil, receives one line per SparseGPT column block.
	Progress io.Writer
}

// withDefaults returns o with defaults filled in, or an error for invalid
// options.
func (o Options) withDefaults() (Options, error) {
	if o.Method == "" {
		o.Method = Magnitude
	}
	if _, err := ParseMethod(string(o.Method)); err != nil {
		return o, err
	}
	if o.Scope == "" {
		o.Scope = ScopeLayer
	}
	if o.Scope != ScopeLayer && o.Scope != ScopeGlobal {
		return o, fmt.Errorf("sparsity: unknown scope %q (want layer or global)", o.Scope)
	}
	if o.Damp == 0 {
		o.Damp = DefaultDamp
	}
	if o.Damp < 0 || math.IsNaN(o.Damp) || math.IsInf(o.Damp, 0) {
		return o, fmt.Errorf("sparsity: damp %v must be >= 0", o.Damp)
	}
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.BlockSize < 0 {
		return o, fmt.Errorf("sparsity: block size %d must be > 0", o.BlockSize)
	}
	if o.Pattern.IsZero() {
		if !(o.Sparsity >= 0 && o.Sparsity < 1) {
			return o, fmt.Errorf("sparsity: sparsity %v must be in [0, 1)", o.Sparsity)
		}
		if o.Scope == ScopeGlobal && o.Method == SparseGPT {
			return o, fmt.Errorf("sparsity: sparsegpt chooses its mask block by block inside each layer; set the scope parameter to layer")
		}
	} else {
		if err := o.Pattern.Validate(); err != nil {
			return o, err
		}
		if o.Method == SparseGPT && o.BlockSize%o.Pattern.M != 0 {
			return o, fmt.Errorf("sparsity: block size %d is not a multiple of M=%d", o.BlockSize, o.Pattern.M)
		}
	}
	return o, nil
}

// PrunedCount returns floor(s·n), the number of weights of n that
// unstructured sparsity s prunes, with s read as the shortest decimal that
// represents it (so 0.7·10 is exactly 7).
func PrunedCount(s float64, n int) int {
	if n <= 0 || !(s > 0) {
		return 0
	}
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(s, 'g', -1, 64))
	if !ok {
		return int(math.Floor(s * float64(n)))
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(n)))
	q := new(big.Int).Quo(r.Num(), r.Denom()) // num, denom > 0: truncation is floor
	k := int(q.Int64())
	if k > n {
		k = n
	}
	return k
}

// splitCounts returns the number pruned in each of the consecutive units of
// the given sizes so that unit u prunes floor(s·end_u) − floor(s·start_u).
func splitCounts(s float64, sizes []int) []int {
	out := make([]int, len(sizes))
	off, prev := 0, 0
	for i, n := range sizes {
		off += n
		c := PrunedCount(s, off)
		out[i] = c - prev
		prev = c
	}
	return out
}
