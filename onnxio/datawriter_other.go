//go:build !linux

package onnxio

import (
	"errors"
	"os"
)

// errNoDirect: direct writes are only used on Linux.
var errNoDirect = errors.New("direct I/O not used on this system")

// setDirect refuses: data files are written through the page cache.
func setDirect(f *os.File, on bool) error {
	if on {
		return errNoDirect
	}
	return nil
}

// isInvalid is false: no direct write is ever attempted.
func isInvalid(err error) bool { return false }
