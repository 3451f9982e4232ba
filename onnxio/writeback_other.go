//go:build !linux

package onnxio

import "os"

// startWriteback is a no-op where sync_file_range does not exist: the
// fsync that ends a save writes everything back.
func startWriteback(f *os.File, off, n int64) {}
