//go:build amd64 && !purego

package merge

import (
	"os"

	"golang.org/x/sys/cpu"
)

// haveAVX2 reports whether the float32 kernels use their AVX2 inner loops
// (kernels_amd64.s): the CPU and the OS support AVX2, and ONNXPOST_SIMD is
// not "off" (which forces the pure-Go loops, to compare the two).
var haveAVX2 = cpu.X86.HasAVX2 && os.Getenv("ONNXPOST_SIMD") != "off"

//go:noescape
func tiesTrimF32(tau *uint64, s *float64, x, b *float32, n int, thr float64)

//go:noescape
func electMeanF64(num, den *float64, tau *uint64, s *float64, n int, w float64)

//go:noescape
func tiesFinalF32(dst, b *float32, num, den *float64, n int, lambda float64)

//go:noescape
func bracketKeysF32(x, b *float32, n int, lo, hi uint32, idx *int32) (above int64, nidx int)

//go:noescape
func dareTauF32(tau *uint64, s *float64, x, b *float32, n int, ctr *[4]uint64, c uint64, d, w float64)
