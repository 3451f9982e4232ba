//go:build !amd64 || purego

package merge

// haveAVX2 is false where the AVX2 loops are not built (another
// architecture, or the purego build tag): the pure-Go loops run.
const haveAVX2 = false

func tiesTrimF32(tau *uint64, s *float64, x, b *float32, n int, thr float64) {
	panic("merge: no AVX2 kernels in this build")
}

func electMeanF64(num, den *float64, tau *uint64, s *float64, n int, w float64) {
	panic("merge: no AVX2 kernels in this build")
}

func tiesFinalF32(dst, b *float32, num, den *float64, n int, lambda float64) {
	panic("merge: no AVX2 kernels in this build")
}

func bracketKeysF32(x, b *float32, n int, lo, hi uint32, idx *int32) (above int64, nidx int) {
	panic("merge: no AVX2 kernels in this build")
}

func dareTauF32(tau *uint64, s *float64, x, b *float32, n int, ctr *[4]uint64, c uint64, d, w float64) {
	panic("merge: no AVX2 kernels in this build")
}
