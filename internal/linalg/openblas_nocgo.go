//go:build !(cgo && unix)

package linalg

import "errors"

// OpenBLAS returns the OpenBLAS backend; in a build without cgo (or on a
// system without dlopen) it is never available.
func OpenBLAS() (Backend, error) {
	return nil, errors.New("OpenBLAS needs a cgo build (CGO_ENABLED=1)")
}

// Info says why no OpenBLAS is loaded.
func Info() string {
	_, err := OpenBLAS()
	return err.Error()
}
