package calib

// KeepRows views x of the given shape as rows along its last axis and
// returns the rows whose token position mask keeps, with their shape
// [rows, D]. The mask applies when x has rank ≥ 2 and exactly one row per
// token position (an [N, T, D] activation of an [N, T] mask, or its
// [N·T, D] reshape); otherwise, or with a nil mask, x and shape come back
// unchanged.
func KeepRows[T float32 | float64](x []T, shape []int64, mask []bool) ([]T, []int64) {
	if mask == nil || len(shape) < 2 {
		return x, shape
	}
	d := shape[len(shape)-1]
	rows := int64(1)
	for _, s := range shape[:len(shape)-1] {
		rows *= s
	}
	if d <= 0 || rows != int64(len(mask)) || int64(len(x)) != rows*d {
		return x, shape
	}
	kept := int64(0)
	for _, k := range mask {
		if k {
			kept++
		}
	}
	if kept == rows {
		return x, shape
	}
	out := make([]T, 0, kept*d)
	for r, k := range mask {
		if k {
			out = append(out, x[int64(r)*d:int64(r+1)*d]...)
		}
	}
	return out, []int64{kept, d}
}
