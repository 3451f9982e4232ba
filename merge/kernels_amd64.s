//go:build amd64 && !purego

#include "textflag.h"

// AVX2 versions of the float32 merge kernels' inner loops. Each does, four
// or eight lanes at a time, exactly the IEEE operations of its Go loop in
// the same order (float32→float64 widening, subtract, abs, compare, add,
// multiply, divide, float64→float32 rounding; no fused multiply-add), so
// the results are bit for bit those of the pure-Go kernels
// (TestAVX2KernelsMatchGo).

DATA absmask64<>+0(SB)/8, $0x7fffffffffffffff
GLOBL absmask64<>(SB), RODATA|NOPTR, $8

DATA absmask32<>+0(SB)/4, $0x7fffffff
GLOBL absmask32<>(SB), RODATA|NOPTR, $4

// func tiesTrimF32(tau *uint64, s *float64, x, b *float32, n int, thr float64)
// For j < n (a multiple of 4): t = float64(x[j]) − float64(b[j]);
// tau[j] = t, or +0 when |t| − thr < 0; s[j] += tau[j].
TEXT ·tiesTrimF32(SB), NOSPLIT, $0-48
	MOVQ tau+0(FP), DI
	MOVQ s+8(FP), SI
	MOVQ x+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSD thr+40(FP), Y15
	VBROADCASTSD absmask64<>(SB), Y14
	VXORPD Y13, Y13, Y13
	XORQ AX, AX

trimloop:
	CMPQ AX, CX
	JGE trimdone
	VCVTPS2PD (R8)(AX*4), Y0
	VCVTPS2PD (R9)(AX*4), Y1
	VSUBPD Y1, Y0, Y0          // t = x − b
	VANDPD Y14, Y0, Y2         // |t|
	VSUBPD Y15, Y2, Y2         // |t| − thr
	VBLENDVPD Y2, Y13, Y0, Y3  // sign of |t| − thr set: +0, else t
	VMOVUPD Y3, (DI)(AX*8)
	VMOVUPD (SI)(AX*8), Y4
	VADDPD Y3, Y4, Y4          // s + τ
	VMOVUPD Y4, (SI)(AX*8)
	ADDQ $4, AX
	JMP trimloop

trimdone:
	VZEROUPPER
	RET

// func electMeanF64(num, den *float64, tau *uint64, s *float64, n int, w float64)
// For j < n (a multiple of 4): a = w when tau[j] is nonzero and has the
// sign bit of s[j] + 0, else +0; num[j] += a·tau[j]; den[j] += a.
TEXT ·electMeanF64(SB), NOSPLIT, $0-48
	MOVQ num+0(FP), DI
	MOVQ den+8(FP), DX
	MOVQ tau+16(FP), SI
	MOVQ s+24(FP), R8
	MOVQ n+32(FP), CX
	VBROADCASTSD w+40(FP), Y15
	VXORPD Y13, Y13, Y13
	XORQ AX, AX

electloop:
	CMPQ AX, CX
	JGE electdone
	VMOVUPD (SI)(AX*8), Y0     // τ
	VMOVUPD (R8)(AX*8), Y1
	VADDPD Y13, Y1, Y1         // s + 0 (−0 becomes +0)
	VXORPD Y0, Y1, Y2          // sign bit set where the signs differ
	VBLENDVPD Y2, Y13, Y15, Y3 // signs differ: +0, else w
	VCMPPD $4, Y13, Y0, Y4     // τ ≠ 0 (unordered: true)
	VANDPD Y4, Y3, Y3          // a
	VMULPD Y0, Y3, Y5          // a·τ
	VMOVUPD (DI)(AX*8), Y6
	VADDPD Y5, Y6, Y6
	VMOVUPD Y6, (DI)(AX*8)
	VMOVUPD (DX)(AX*8), Y7
	VADDPD Y3, Y7, Y7
	VMOVUPD Y7, (DX)(AX*8)
	ADDQ $4, AX
	JMP electloop

electdone:
	VZEROUPPER
	RET

// func tiesFinalF32(dst, b *float32, num, den *float64, n int, lambda float64)
// For j < n (a multiple of 4): mean = num[j]/den[j], or 0 when den[j] == 0;
// dst[j] = float32(float64(b[j]) + lambda·mean).
TEXT ·tiesFinalF32(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ b+8(FP), SI
	MOVQ num+16(FP), R8
	MOVQ den+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSD lambda+40(FP), Y15
	VXORPD Y13, Y13, Y13
	XORQ AX, AX

finalloop:
	CMPQ AX, CX
	JGE finaldone
	VMOVUPD (R8)(AX*8), Y0     // num
	VMOVUPD (R9)(AX*8), Y1     // den
	VDIVPD Y1, Y0, Y2          // num/den
	VCMPPD $0, Y13, Y1, Y3     // den == 0 (ordered)
	VBLENDVPD Y3, Y13, Y2, Y2  // den == 0: 0
	VMULPD Y2, Y15, Y2         // λ·mean
	VCVTPS2PD (SI)(AX*4), Y4
	VADDPD Y2, Y4, Y4          // b + λ·mean
	VCVTPD2PSY Y4, X5
	VMOVUPS X5, (DI)(AX*4)
	ADDQ $4, AX
	JMP finalloop

finaldone:
	VZEROUPPER
	RET

// func bracketKeysF32(x, b *float32, n int, lo, hi uint32, idx *int32) (above int64, nidx int)
// For j < n (a multiple of 8): key = float32 bits of |float64(x[j]) −
// float64(b[j])| without the sign bit, 0 when x[j] == b[j]; counts the keys
// > hi and writes the j with lo ≤ key ≤ hi to idx (lo, hi ≤ 0x7fffffff).
TEXT ·bracketKeysF32(SB), NOSPLIT, $0-56
	MOVQ x+0(FP), R8
	MOVQ b+8(FP), R9
	MOVQ n+16(FP), CX
	MOVQ idx+32(FP), DI
	MOVL lo+24(FP), AX
	VMOVD AX, X12
	VPBROADCASTD X12, Y12
	MOVL hi+28(FP), AX
	VMOVD AX, X11
	VPBROADCASTD X11, Y11
	VPBROADCASTD absmask32<>(SB), Y10
	VBROADCASTSD absmask64<>(SB), Y14
	VPXOR Y9, Y9, Y9
	XORQ AX, AX
	XORQ R12, R12

keyloop:
	CMPQ AX, CX
	JGE keydone
	VMOVUPS (R8)(AX*4), Y0
	VMOVUPS (R9)(AX*4), Y1
	VCMPPS $0, Y1, Y0, Y8      // x == b (ordered)
	VCVTPS2PD X0, Y2
	VCVTPS2PD X1, Y3
	VSUBPD Y3, Y2, Y2
	VANDPD Y14, Y2, Y2
	VCVTPD2PSY Y2, X2
	VEXTRACTF128 $1, Y0, X4
	VEXTRACTF128 $1, Y1, X5
	VCVTPS2PD X4, Y4
	VCVTPS2PD X5, Y5
	VSUBPD Y5, Y4, Y4
	VANDPD Y14, Y4, Y4
	VCVTPD2PSY Y4, X4
	VINSERTF128 $1, X4, Y2, Y2 // float32 bits of |x − b|
	VPAND Y10, Y2, Y2          // without the sign bit
	VPANDN Y2, Y8, Y2          // 0 where x == b
	VPCMPGTD Y11, Y2, Y6       // key > hi
	VPSUBD Y6, Y9, Y9          // count it
	VPCMPGTD Y2, Y12, Y7       // lo > key
	VPOR Y6, Y7, Y7            // outside [lo, hi]
	VMOVMSKPS Y7, DX
	XORL $0xff, DX             // inside
	JZ keynext

keybits:
	BSFL DX, R10
	LEAQ (AX)(R10*1), R11
	MOVL R11, (DI)(R12*4)
	INCQ R12
	LEAL -1(DX), R13
	ANDL R13, DX
	JNZ keybits

keynext:
	ADDQ $8, AX
	JMP keyloop

keydone:
	VEXTRACTI128 $1, Y9, X0
	VPADDD X0, X9, X0
	VPSHUFD $0x4e, X0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VPADDD X1, X0, X0
	VMOVD X0, AX
	MOVQ AX, above+40(FP)
	MOVQ R12, nidx+48(FP)
	VZEROUPPER
	RET

DATA mixc1<>+0(SB)/8, $0xBF58476D1CE4E5B9
GLOBL mixc1<>(SB), RODATA|NOPTR, $8
DATA mixc1hi<>+0(SB)/8, $0xBF58476D
GLOBL mixc1hi<>(SB), RODATA|NOPTR, $8
DATA mixc2<>+0(SB)/8, $0x94D049BB133111EB
GLOBL mixc2<>(SB), RODATA|NOPTR, $8
DATA mixc2hi<>+0(SB)/8, $0x94D049BB
GLOBL mixc2hi<>(SB), RODATA|NOPTR, $8
DATA golden4<>+0(SB)/8, $0x9E3779B97F4A7C15
GLOBL golden4<>(SB), RODATA|NOPTR, $8

// MUL64(a, c, chi, t1, t2, dst): dst = a·c mod 2⁶⁴ per 64-bit lane (AVX2
// has no 64-bit multiply): al·cl + ((ah·cl + al·ch) << 32); a kept.
#define MUL64(a, c, chi, t1, t2, dst) \
	VPSRLQ $32, a, t1; \
	VPMULUDQ c, t1, t1; \
	VPMULUDQ chi, a, t2; \
	VPADDQ t1, t2, t1; \
	VPSLLQ $32, t1, t1; \
	VPMULUDQ c, a, dst; \
	VPADDQ t1, dst, dst

// func dareTauF32(tau *uint64, s *float64, x, b *float32, n int, ctr *[4]uint64, c uint64, d, w float64)
// For j < n (a multiple of 4), with u = mix(ctr[0] + j·golden) (SplitMix64,
// rng.go): t = (float64(x[j]) − float64(b[j]))/d; tau[j] = t when
// u>>11 < c (that is Uniform < d, c = ⌈d·2⁵³⌉), else +0; s[j] += w·tau[j].
// ctr holds the counters of the first four lanes: ctr[0] + i·golden.
TEXT ·dareTauF32(SB), NOSPLIT, $0-72
	MOVQ tau+0(FP), DI
	MOVQ s+8(FP), SI
	MOVQ x+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ ctr+40(FP), DX
	VMOVDQU (DX), Y0              // counters
	VPBROADCASTQ c+48(FP), Y12
	VBROADCASTSD d+56(FP), Y11
	VBROADCASTSD w+64(FP), Y10
	VPBROADCASTQ golden4<>(SB), Y9
	VPSLLQ $2, Y9, Y8             // 4·golden: the step between iterations
	VPBROADCASTQ mixc1<>(SB), Y7
	VPBROADCASTQ mixc1hi<>(SB), Y6
	VPBROADCASTQ mixc2<>(SB), Y5
	VPBROADCASTQ mixc2hi<>(SB), Y4
	XORQ AX, AX

dareloop:
	CMPQ AX, CX
	JGE daredone
	VPADDQ Y9, Y0, Y1             // z = counter + golden
	VPSRLQ $30, Y1, Y2
	VPXOR Y2, Y1, Y1
	MUL64(Y1, Y7, Y6, Y2, Y3, Y13)
	VPSRLQ $27, Y13, Y2
	VPXOR Y2, Y13, Y13
	MUL64(Y13, Y5, Y4, Y2, Y3, Y1)
	VPSRLQ $31, Y1, Y2
	VPXOR Y2, Y1, Y1              // u
	VPSRLQ $11, Y1, Y1            // u >> 11
	VPCMPGTQ Y1, Y12, Y14         // keep: c > u>>11
	VCVTPS2PD (R8)(AX*4), Y2
	VCVTPS2PD (R9)(AX*4), Y3
	VSUBPD Y3, Y2, Y2             // x − b
	VDIVPD Y11, Y2, Y2            // t
	VANDPD Y14, Y2, Y2            // dropped: +0
	VMOVUPD Y2, (DI)(AX*8)
	VMULPD Y2, Y10, Y2            // w·τ
	VMOVUPD (SI)(AX*8), Y3
	VADDPD Y2, Y3, Y3
	VMOVUPD Y3, (SI)(AX*8)
	VPADDQ Y8, Y0, Y0
	ADDQ $4, AX
	JMP dareloop

daredone:
	VZEROUPPER
	RET
