package onnxio

import (
	"math"
	"sort"
	"sync"
)

// Float32ToFloat16 converts f to IEEE half precision bits with
// round-to-nearest-even; values beyond the range become ±Inf, NaN stays NaN.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rounded := man >> shift
		rem := man & ((1 << shift) - 1)
		if rem > half || (rem == half && rounded&1 == 1) {
			rounded++
		}
		return sign | uint16(rounded)
	}
	rounded := man >> 13
	rem := man & 0x1fff
	out := uint32(e)<<10 | rounded
	if rem > 0x1000 || (rem == 0x1000 && rounded&1 == 1) {
		out++ // may carry into the exponent, up to Inf: correct
	}
	return sign | uint16(out)
}

// Float16ToFloat32 converts IEEE half precision bits to float32 (exact).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(man) / 1024 / 16384
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// Float32ToBFloat16 converts f to bfloat16 bits with round-to-nearest-even;
// NaN stays a (quiet) NaN.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BFloat16ToFloat32 converts bfloat16 bits to float32 (exact).
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// smallFloat describes an OCP/ONNX float format of 8 bits or fewer.
type smallFloat struct {
	bits, exp, man, bias int
	nan                  string // "ieee" (all-ones exponent), "fn" (all ones), "fnuz" (0x80), "none"
	inf                  bool   // IEEE infinities exist
	signed               bool
	once                 sync.Once
	decode               []float32
	pos                  []float32 // sorted positive finite values (with 0)
	posCode              []uint8
	nanCode              uint8
	max                  float32
}

var (
	fmtE4M3FN   = &smallFloat{bits: 8, exp: 4, man: 3, bias: 7, nan: "fn", signed: true}
	fmtE4M3FNUZ = &smallFloat{bits: 8, exp: 4, man: 3, bias: 8, nan: "fnuz", signed: true}
	fmtE5M2     = &smallFloat{bits: 8, exp: 5, man: 2, bias: 15, nan: "ieee", inf: true, signed: true}
	fmtE5M2FNUZ = &smallFloat{bits: 8, exp: 5, man: 2, bias: 16, nan: "fnuz", signed: true}
	fmtE2M1     = &smallFloat{bits: 4, exp: 2, man: 1, bias: 1, nan: "none", signed: true}
	fmtE2M3     = &smallFloat{bits: 6, exp: 2, man: 3, bias: 1, nan: "none", signed: true}
	fmtE3M2     = &smallFloat{bits: 6, exp: 3, man: 2, bias: 3, nan: "none", signed: true}
	fmtE8M0     = &smallFloat{bits: 8, exp: 8, man: 0, bias: 127, nan: "e8m0", signed: false}
)

func (s *smallFloat) value(code int) float32 {
	signBit := 0
	if s.signed {
		signBit = (code >> (s.exp + s.man)) & 1
	}
	mag := code & ((1 << (s.exp + s.man)) - 1)
	e := mag >> s.man
	m := mag & ((1 << s.man) - 1)
	allExp := (1 << s.exp) - 1
	switch s.nan {
	case "ieee":
		if e == allExp {
			if m == 0 {
				return float32(math.Inf(1 - 2*signBit))
			}
			return float32(math.NaN())
		}
	case "fn":
		if e == allExp && m == (1<<s.man)-1 {
			return float32(math.NaN())
		}
	case "fnuz":
		if signBit == 1 && mag == 0 {
			return float32(math.NaN())
		}
	case "e8m0":
		if code == 0xff {
			return float32(math.NaN())
		}
		return float32(math.Ldexp(1, code-127))
	}
	var v float64
	if e == 0 {
		v = math.Ldexp(float64(m)/float64(int(1)<<s.man), 1-s.bias)
	} else {
		v = math.Ldexp(1+float64(m)/float64(int(1)<<s.man), e-s.bias)
	}
	if signBit == 1 {
		v = -v
	}
	return float32(v)
}

func (s *smallFloat) init() {
	s.once.Do(func() {
		n := 1 << s.bits
		s.decode = make([]float32, n)
		type pv struct {
			v float32
			c uint8
		}
		var ps []pv
		for c := 0; c < n; c++ {
			v := s.value(c)
			s.decode[c] = v
			if v != v {
				s.nanCode = uint8(c)
				continue
			}
			if v >= 0 && !math.IsInf(float64(v), 0) && !(v == 0 && math.Signbit(float64(v))) {
				if s.signed && (c>>(s.exp+s.man))&1 == 1 {
					continue
				}
				ps = append(ps, pv{v, uint8(c)})
			}
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].v < ps[j].v })
		for _, p := range ps {
			s.pos = append(s.pos, p.v)
			s.posCode = append(s.posCode, p.c)
		}
		s.max = s.pos[len(s.pos)-1]
	})
}

// encode rounds f to the nearest representable value (ties to the even
// code), saturating out-of-range values to the largest finite value; for
// formats with infinities, ±Inf stays ±Inf.
func (s *smallFloat) encode(f float32) uint8 {
	s.init()
	if f != f {
		return s.nanCode
	}
	neg := math.Signbit(float64(f))
	a := float32(math.Abs(float64(f)))
	var code uint8
	if math.IsInf(float64(a), 0) && s.inf {
		code = uint8(((1 << s.exp) - 1) << s.man)
	} else {
		i := sort.Search(len(s.pos), func(i int) bool { return s.pos[i] >= a })
		switch {
		case i == len(s.pos):
			code = s.posCode[len(s.pos)-1]
		case s.pos[i] == a || i == 0:
			code = s.posCode[i]
		default:
			lo, hi := s.pos[i-1], s.pos[i]
			dl, dh := float64(a)-float64(lo), float64(hi)-float64(a)
			switch {
			case dl < dh:
				code = s.posCode[i-1]
			case dh < dl:
				code = s.posCode[i]
			default:
				if s.posCode[i-1]&1 == 0 {
					code = s.posCode[i-1]
				} else {
					code = s.posCode[i]
				}
			}
		}
	}
	if neg && s.signed && !(code == 0 && s.nan == "fnuz") {
		code |= 1 << (s.exp + s.man)
	}
	return code
}

func smallFloatFormat(d DType) *smallFloat {
	switch d {
	case Float8E4M3FN:
		return fmtE4M3FN
	case Float8E4M3FNUZ:
		return fmtE4M3FNUZ
	case Float8E5M2:
		return fmtE5M2
	case Float8E5M2FNUZ:
		return fmtE5M2FNUZ
	case Float4E2M1:
		return fmtE2M1
	case Float6E2M3:
		return fmtE2M3
	case Float6E3M2:
		return fmtE3M2
	case Float8E8M0:
		return fmtE8M0
	}
	return nil
}
