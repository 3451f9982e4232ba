package onnxio

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE: start writing back the
// dirty pages of a range without waiting for them.
const syncFileRangeWrite = 2

// startWriteback asks the kernel to begin writing f's bytes [off, off+n)
// to disk now, so that the fsync that ends a save waits for the tail only
// instead of for the whole file (with the default dirty-page thresholds a
// 1 GB file would otherwise not be written back before the fsync). It does
// not make anything durable, and errors are ignored: the fsync decides.
func startWriteback(f *os.File, off, n int64) {
	if n <= 0 {
		return
	}
	_, _, _ = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
}
