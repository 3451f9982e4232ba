package quant

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/onnxpost/onnxpost/internal/safe"
)

// ScaleRule chooses how a block's scale and zero point are derived from its
// values.
type ScaleRule int

const (
	// RuleDefault is the method's own rule: RuleORT for QuantizeRTN,
	// RuleGPTQ for GPTQ.
	RuleDefault ScaleRule = iota
	// RuleORT is the rule of ONNX Runtime's MatMulNBits quantizer (MLAS):
	// asymmetric: the block's [min, max] widened to contain 0,
	// scale = (max − min)/(2^bits − 1), zero point = round(−min/scale);
	// symmetric: m = the block value of largest magnitude (with its sign),
	// scale = m / −2^(bits−1), zero point 2^(bits−1), so that m maps to
	// code 0 exactly.
	RuleORT
	// RuleGPTQ is the rule of the reference GPTQ quantizer
	// (Quantizer.find_params): asymmetric as RuleORT; symmetric:
	// a = max|x|, scale = 2a/(2^bits − 1), zero point (2^bits)/2; an
	// all-zero block uses the range [−1, 1].
	RuleGPTQ
)

// String returns "default", "ort" or "gptq".
func (r ScaleRule) String() string {
	switch r {
	case RuleORT:
		return "ort"
	case RuleGPTQ:
		return "gptq"
	}
	return "default"
}

// BlockOptions chooses a block-wise quantization of a MatMul weight.
type BlockOptions struct {
	// Bits per weight: 2, 4 or 8 (default 4).
	Bits int
	// BlockSize is the number of consecutive K elements sharing a scale:
	// a power of two ≥ 16 (default 32).
	BlockSize int
	// Symmetric stores no zero points (the op's default 2^(bits−1) is used).
	Symmetric bool
	// Rule is the scale rule (RuleDefault: the method's own).
	Rule ScaleRule
}

func (o BlockOptions) withDefaults() BlockOptions {
	if o.Bits == 0 {
		o.Bits = 4
	}
	if o.BlockSize == 0 {
		o.BlockSize = 32
	}
	return o
}

// ValidBlockSize reports whether b is a power of two ≥ 16, the block sizes
// MatMulNBits accepts.
func ValidBlockSize(b int) bool {
	return b >= 16 && b&(b-1) == 0
}

func (o BlockOptions) validate() error {
	if o.Bits != 2 && o.Bits != 4 && o.Bits != 8 {
		return fmt.Errorf("%w: %d (want 2, 4 or 8)", ErrBits, o.Bits)
	}
	if !ValidBlockSize(o.BlockSize) {
		return fmt.Errorf("%w: got %d", ErrBlockSize, o.BlockSize)
	}
	return nil
}

// Blockwise is a MatMul weight B [K, N] quantized in blocks of BlockSize
// consecutive elements along K for each output column n:
// B[k, n] ≈ (Codes[n·K + k] − ZeroPoints[n·nb + k/BlockSize]) · Scales[n·nb + k/BlockSize],
// with nb = ceil(K / BlockSize).
type Blockwise struct {
	// K and N are the weight's reduction and output sizes.
	K, N int
	// Bits per code and BlockSize (elements of K per block).
	Bits, BlockSize int
	// Symmetric reports that every zero point is 2^(Bits−1).
	Symmetric bool
	// Codes holds unsigned codes in [0, 2^Bits − 1], laid out [N][K].
	Codes []uint8
	// Scales holds one scale per block, laid out [N][nb].
	Scales []float32
	// ZeroPoints holds one zero point per block, laid out [N][nb].
	ZeroPoints []uint8
}

// Blocks returns the number of blocks along K, ceil(K / BlockSize).
func (b *Blockwise) Blocks() int { return (b.K + b.BlockSize - 1) / b.BlockSize }

// Dequantize returns the weight [K, N] (row-major) that the codes stand for.
func (b *Blockwise) Dequantize() []float32 {
	nb := b.Blocks()
	out := make([]float32, b.K*b.N)
	for n := 0; n < b.N; n++ {
		for k := 0; k < b.K; k++ {
			j := n*nb + k/b.BlockSize
			out[k*b.N+n] = float32(int(b.Codes[n*b.K+k])-int(b.ZeroPoints[j])) * b.Scales[j]
		}
	}
	return out
}

// RelError returns RelError(w, b.Dequantize()) without materializing the
// dequantized weight (one layer's worth of float32s fewer in memory): the
// same sums in the same order, so the same value.
func (b *Blockwise) RelError(w []float32) float64 {
	if len(w) != b.K*b.N {
		panic(fmt.Errorf("%w: %d values for [%d, %d]", ErrShape, len(w), b.K, b.N))
	}
	nb := b.Blocks()
	var num, den float64
	for k := 0; k < b.K; k++ {
		for n := 0; n < b.N; n++ {
			j := n*nb + k/b.BlockSize
			q := float32(int(b.Codes[n*b.K+k])-int(b.ZeroPoints[j])) * b.Scales[j]
			v := w[k*b.N+n]
			d := float64(v) - float64(q)
			num += d * d
			den += float64(v) * float64(v)
		}
	}
	return relFromSums(num, den)
}

// blockParams returns scale and zero point of the values xs under rule.
func blockParams(xs []float64, bits int, symmetric bool, rule ScaleRule) (scale float64, zp int) {
	lo, hi := 0.0, 0.0
	for _, v := range xs {
		lo = math.Min(lo, v)
		hi = math.Max(hi, v)
	}
	return rangeParams(lo, hi, bits, symmetric, rule)
}

// rangeParams returns scale and zero point of a block whose values span
// [lo, hi] (lo ≤ 0 ≤ hi) under rule.
func rangeParams(lo, hi float64, bits int, symmetric bool, rule ScaleRule) (scale float64, zp int) {
	maxq := float64(int(1)<<bits - 1)
	half := 1 << (bits - 1)
	switch {
	case symmetric && rule == RuleORT:
		m := hi
		if math.Abs(lo) > math.Abs(hi) {
			m = lo
		}
		return m / -float64(half), half
	case symmetric:
		a := math.Max(-lo, hi)
		if a == 0 {
			a = 1
		}
		return 2 * a / maxq, half
	}
	if rule == RuleGPTQ && lo == 0 && hi == 0 {
		lo, hi = -1, 1
	}
	scale = (hi - lo) / maxq
	if scale == 0 {
		return 0, 0
	}
	return scale, clampInt(int(math.RoundToEven(-lo/scale)), 0, int(maxq))
}

// blockCode returns clamp(roundToEven(x/scale) + zp, 0, 2^bits − 1), or zp
// when scale is 0.
func blockCode(x float64, scale float32, zp, bits int) uint8 {
	if scale == 0 {
		return uint8(zp)
	}
	q := math.RoundToEven(x/float64(scale)) + float64(zp)
	return uint8(math.Max(0, math.Min(q, float64(int(1)<<bits-1))))
}

// QuantizeRTN quantizes the MatMul weight w [K, N] (row-major) block-wise
// along K by rounding to nearest. It panics with ErrShape when
// len(w) != k·n; a panic in one of its column workers comes back as a
// *safe.PanicError.
func QuantizeRTN(w []float32, k, n int, opt BlockOptions) (*Blockwise, error) {
	if k < 0 || n < 0 || len(w) != k*n {
		panic(fmt.Errorf("%w: %d values for [%d, %d]", ErrShape, len(w), k, n))
	}
	opt = opt.withDefaults()
	if opt.Rule == RuleDefault {
		opt.Rule = RuleORT
	}
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if err := checkFinite(w); err != nil {
		return nil, err
	}
	b := newBlockwise(k, n, opt)
	// Columns are independent: split them over the CPUs.
	workers := min(runtime.GOMAXPROCS(0), max(1, n*k/(1<<16)))
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	errs := make([]error, workers) // ⌈n/chunk⌉ ≤ workers goroutines
	for c0 := 0; c0 < n; c0 += chunk {
		wg.Add(1)
		go func(g, c0, c1 int) {
			defer wg.Done()
			defer safe.Recover("rtn worker", &errs[g])
			b.rtnColumns(w, c0, c1, opt)
		}(c0/chunk, c0, min(c0+chunk, n))
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// rtnColumns quantizes columns [c0, c1) of w [K, N] into b.
func (b *Blockwise) rtnColumns(w []float32, c0, c1 int, opt BlockOptions) {
	k, n, nb := b.K, b.N, b.Blocks()
	width := c1 - c0
	lo, hi := make([]float64, width), make([]float64, width)
	maxq := float64(int(1)<<opt.Bits - 1)
	for j := 0; j < nb; j++ {
		k0, k1 := j*opt.BlockSize, min((j+1)*opt.BlockSize, k)
		clear(lo)
		clear(hi)
		for kk := k0; kk < k1; kk++ {
			for i, v := range w[kk*n+c0 : kk*n+c1] {
				f := float64(v)
				lo[i] = math.Min(lo[i], f)
				hi[i] = math.Max(hi[i], f)
			}
		}
		for i := 0; i < width; i++ {
			c := c0 + i
			s, z := rangeParams(lo[i], hi[i], opt.Bits, opt.Symmetric, opt.Rule)
			b.Scales[c*nb+j], b.ZeroPoints[c*nb+j] = float32(s), uint8(z)
			zf, sf := float64(z), float64(float32(s))
			codes := b.Codes[c*k+k0 : c*k+k1]
			for t := range codes {
				code := zf
				if sf != 0 {
					code = math.Max(0, math.Min(math.RoundToEven(float64(w[(k0+t)*n+c])/sf)+zf, maxq))
				}
				codes[t] = uint8(code)
			}
		}
	}
}

func newBlockwise(k, n int, opt BlockOptions) *Blockwise {
	nb := (k + opt.BlockSize - 1) / opt.BlockSize
	return &Blockwise{
		K: k, N: n, Bits: opt.Bits, BlockSize: opt.BlockSize, Symmetric: opt.Symmetric,
		Codes:      make([]uint8, n*k),
		Scales:     make([]float32, n*nb),
		ZeroPoints: make([]uint8, n*nb),
	}
}

func checkFinite(w []float32) error {
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: weight element %d is %v", ErrNonFinite, i, v)
		}
	}
	return nil
}

// packCodes packs codes of the given bit width low bits first into dst.
func packCodes(dst []uint8, codes []uint8, bits int) {
	for i, c := range codes {
		bit := i * bits
		dst[bit/8] |= (c & uint8(1<<bits-1)) << (bit % 8)
	}
}

// MatMulNBits returns the inputs of the com.microsoft MatMulNBits op in ONNX
// Runtime's layout:
//   - B: uint8 [N, nb, blob] with blob = BlockSize·Bits/8, codes packed low
//     bits first along K; the padding of the last block holds the zero point;
//   - scales: float32 [N, nb];
//   - zeroPoints: uint8 [N, ceil(nb·Bits/8)], packed low bits first, unused
//     trailing bits holding 2^(Bits−1) (nil when Symmetric: the op's default
//     2^(Bits−1) applies).
func (b *Blockwise) MatMulNBits() (B []uint8, scales []float32, zeroPoints []uint8) {
	nb := b.Blocks()
	blob := b.BlockSize * b.Bits / 8
	B = make([]uint8, b.N*nb*blob)
	block := make([]uint8, b.BlockSize)
	for n := 0; n < b.N; n++ {
		for j := 0; j < nb; j++ {
			k0, k1 := j*b.BlockSize, min((j+1)*b.BlockSize, b.K)
			copy(block, b.Codes[n*b.K+k0:n*b.K+k1])
			for i := k1 - k0; i < b.BlockSize; i++ {
				block[i] = b.ZeroPoints[n*nb+j]
			}
			off := (n*nb + j) * blob
			packCodes(B[off:off+blob], block, b.Bits)
		}
	}
	scales = append([]float32(nil), b.Scales...)
	if b.Symmetric {
		return B, scales, nil
	}
	zpRow := (nb*b.Bits + 7) / 8
	zeroPoints = make([]uint8, b.N*zpRow)
	row := make([]uint8, zpRow*8/b.Bits)
	for n := 0; n < b.N; n++ {
		copy(row, b.ZeroPoints[n*nb:(n+1)*nb])
		for j := nb; j < len(row); j++ {
			row[j] = uint8(1 << (b.Bits - 1)) // padding, as ONNX Runtime writes it
		}
		packCodes(zeroPoints[n*zpRow:(n+1)*zpRow], row, b.Bits)
	}
	return B, scales, zeroPoints
}

// BlockedQDQ returns the initializers of an opset-21 DequantizeLinear with
// block_size = BlockSize along axis 0 that reproduces Dequantize() (4 or 8
// bits; 2 bits would need int2, opset 25):
//   - data: [K, N], 4 bits packed two per byte, low nibble first, or one
//     byte per value with 8 bits; signed (code − 2^(Bits−1), int4/int8)
//     when Symmetric, unsigned (uint4/uint8) otherwise;
//   - scales: float32 [nb, N];
//   - zeroPoints: [nb, N] of the data's type, packed likewise (nil when
//     Symmetric: the signed zero point 0).
func (b *Blockwise) BlockedQDQ() (data []uint8, scales []float32, zeroPoints []uint8, err error) {
	if b.Bits != 4 && b.Bits != 8 {
		return nil, nil, nil, fmt.Errorf("%w: blocked DequantizeLinear supports 4 and 8 bits here (int2 needs opset 25), got %d", ErrBits, b.Bits)
	}
	nb := b.Blocks()
	half := 1 << (b.Bits - 1)
	mask := uint8(1<<b.Bits - 1)
	codes := make([]uint8, b.K*b.N)
	for k := 0; k < b.K; k++ {
		for n := 0; n < b.N; n++ {
			c := b.Codes[n*b.K+k]
			if b.Symmetric {
				c = uint8(int(c)-half) & mask // two's complement in Bits bits
			}
			codes[k*b.N+n] = c
		}
	}
	data = make([]uint8, (b.K*b.N*b.Bits+7)/8)
	packCodes(data, codes, b.Bits)
	scales = make([]float32, nb*b.N)
	zps := make([]uint8, nb*b.N)
	for n := 0; n < b.N; n++ {
		for j := 0; j < nb; j++ {
			scales[j*b.N+n] = b.Scales[n*nb+j]
			zps[j*b.N+n] = b.ZeroPoints[n*nb+j]
		}
	}
	if b.Symmetric {
		return data, scales, nil, nil
	}
	zeroPoints = make([]uint8, (nb*b.N*b.Bits+7)/8)
	packCodes(zeroPoints, zps, b.Bits)
	return data, scales, zeroPoints, nil
}
