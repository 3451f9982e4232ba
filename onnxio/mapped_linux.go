package onnxio

import (
	"os"
	"syscall"
)

// mmapFile maps size bytes of f read-only and shared (the page cache's
// pages, no copy).
func mmapFile(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return []byte{}, nil
	}
	if int64(int(size)) != size {
		return nil, errNoMmap
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, &os.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	return b, nil
}

// munmapFile undoes mmapFile.
func munmapFile(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return syscall.Munmap(b)
}

// releasePages tells the kernel that b[off:off+n] is not needed for now:
// the pages leave the resident set (a shared read-only mapping refaults
// them from the page cache). The range is widened to whole pages.
func releasePages(b []byte, off, n int) {
	ps := os.Getpagesize()
	lo := off / ps * ps
	hi := min((off+n+ps-1)/ps*ps, len(b))
	if hi > lo {
		_ = syscall.Madvise(b[lo:hi], syscall.MADV_DONTNEED)
	}
}

// madvPopulateRead is MADV_POPULATE_READ (Linux 5.14).
const madvPopulateRead = 22

// populatePages maps b[off:off+n]'s pages (widened to whole pages) in one
// call; errors (an older kernel, a shrunk file) are left to the reads.
func populatePages(b []byte, off, n int) {
	ps := os.Getpagesize()
	lo := off / ps * ps
	hi := min((off+n+ps-1)/ps*ps, len(b))
	if hi > lo {
		_ = syscall.Madvise(b[lo:hi], madvPopulateRead)
	}
}
