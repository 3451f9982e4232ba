//go:build !linux

package onnxio

import "os"

// mmapFile reports that maps are not used here: Mapped reads instead.
func mmapFile(f *os.File, size int64) ([]byte, error) { return nil, errNoMmap }

func munmapFile(b []byte) error { return nil }

func releasePages(b []byte, off, n int) {}

func populatePages(b []byte, off, n int) {}
